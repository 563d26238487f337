"""Findings read off the result tables: what the curves say, in numbers (pandas only, no Ray).

- Intermediate points that beat both endpoints (the paper's "intermediate models can
  outperform endpoints", Cheng & Amiri 2025): on each curve, the interior points t that are at
  least as good as each endpoint on every trade-off metric of the task and strictly better on one
  (Pareto dominance of both endpoints), with the gain per metric over the better endpoint.
- The method-pair similarity ranking (the paper's "mechanistic similarity"): pairs of different
  methods ranked by the retain barrier B_r of the linear curve between their models; a lower
  linear barrier means the two methods land in the same basin, i.e. are more similar.
- Seed spread: mean ± sample std (ddof 1) over seeds of the barriers, for the tables; the
  figures draw the same spread as bands along t.

"Better" follows each metric's registered direction (``mcu_ray.tables.direction``: +1 higher is
better after unlearning, -1 lower is).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from mcu_ray.plan import SETTINGS_TABLE
from mcu_ray.tables import direction
from mcu_ray.tasks import TASKS

# The trade-off an unlearned model is judged on, per task family:
# classification: SalUn's / MU-Bench's accuracies (forget ↓, retain ↑, test ↑: UA, RA, TA of
#   Fan et al. 2024); TOFU: Forget Quality ↑ against Model Utility ↑, the two axes of TOFU's
#   trade-off plots (Maini et al. 2024, Figure 5).
# Every one of them is a fraction in [0, 1], so gains on different metrics can be compared.
TRADEOFFS = {"classification": ("acc_forget", "acc_retain", "acc_test"), "tofu": ("forget_quality", "model_utility")}
POINT_KEYS = ["task", "setting", "method_1", "method_2", "ratio", "seed", "cell_id", "curve"]


def tradeoff(task: str) -> dict[str, int]:
    """The task's trade-off metrics and their directions ({} for an unregistered task)."""
    if task not in TASKS:
        return {}
    return {m: direction(m) for m in TRADEOFFS.get(TASKS[task].family, ())}


def outperforming_points(results: pd.DataFrame, task: str) -> pd.DataFrame:
    """Every interior point of the task's curves that beats both of its endpoints on the trade-off.

    A point at 0 < t < 1 beats an endpoint when it is better or equal on every trade-off metric
    and strictly better on at least one; it must beat both endpoints. ``gain <metric>`` is how
    much better than the better endpoint it is on that metric (in the metric's units, >= 0);
    ``min gain`` the smallest of them, the point's margin on its worst metric. Rows of failed
    curves and points with a missing metric never count. One row per such point, in curve order.
    """
    metrics = tradeoff(task)
    columns = [*POINT_KEYS, "t", *(f"gain {m}" for m in metrics), "min gain"]
    rows = results[(results["task"] == task) & (results["status"] == "ok")]
    if not metrics or rows.empty:
        return pd.DataFrame(columns=columns)
    names, signs = list(metrics), np.array(list(metrics.values()), float)
    keys = ["cell_id", "curve"]
    ends = {t: rows[rows["t"] == t].drop_duplicates(keys).set_index(keys)[names] for t in (0.0, 1.0)}
    inside = rows[(rows["t"] > 0) & (rows["t"] < 1)]
    where = pd.MultiIndex.from_frame(inside[keys])
    values = inside[names].to_numpy(float) * signs  # (points, metrics), larger is better
    start, end = (ends[t].reindex(where).to_numpy(float) * signs for t in (0.0, 1.0))
    beats = np.ones(len(inside), bool)
    for endpoint in (start, end):
        ahead = values - endpoint  # NaN anywhere compares False: never counts
        beats &= (ahead >= 0).all(axis=1) & (ahead > 0).any(axis=1)
    gains = values[beats] - np.fmax(start[beats], end[beats])
    found = inside.loc[beats, [*POINT_KEYS, "t"]].reset_index(drop=True)
    for i, m in enumerate(names):
        found[f"gain {m}"] = gains[:, i]
    found["min gain"] = gains.min(axis=1) if len(gains) else np.array([], float)
    return found[columns]


def best_points(points: pd.DataFrame) -> pd.DataFrame:
    """One row per curve that has outperforming points: how many (``points``), the first and last
    such t, and the point with the largest ``min gain`` (the most even improvement on every metric)."""
    columns = [*points.columns, "points", "first t", "last t"]
    if points.empty:
        return pd.DataFrame(columns=columns)
    by_curve = points.groupby(["cell_id", "curve"], sort=False)
    best = points.loc[by_curve["min gain"].idxmax()].set_index(["cell_id", "curve"])
    best["points"], best["first t"], best["last t"] = by_curve.size(), by_curve["t"].min(), by_curve["t"].max()
    return best.reset_index()[columns]


def similarity_ranking(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Pairs of different methods ranked by their linear curve's retain barrier, per setting and ratio.

    ``verdicts``: one row per (cell, curve) with ``retain_barrier``, ``forget_barrier`` and ``status``
    (``report.tables.curve_verdicts``). In a setting whose two endpoints share a variant, A→B and
    B→A join the same two models by the same straight line (one stored curve): they are one
    unordered pair. Per seed the barrier is that curve's; across seeds, mean and sample std.
    Rank 1 = the lowest mean B_r = the most similar pair.
    """
    columns = ["task", "setting", "ratio", "rank", "method_1", "method_2", "seeds", "retain_barrier",
               "retain_barrier_std", "forget_barrier", "forget_barrier_std"]
    rows = verdicts[(verdicts["curve"] == "linear") & (verdicts["status"] == "ok")
                    & (verdicts["method_1"] != verdicts["method_2"])]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    symmetric = rows["setting"].map(lambda s: s not in SETTINGS_TABLE or SETTINGS_TABLE[s][1] == SETTINGS_TABLE[s][2])
    swap = symmetric & (rows["method_1"] > rows["method_2"])
    rows = rows.assign(method_1=rows["method_1"].where(~swap, rows["method_2"]),
                       method_2=rows["method_2"].where(~swap, rows["method_1"]))
    pair = ["task", "setting", "ratio", "method_1", "method_2"]
    per_seed = rows.groupby([*pair, "seed"])[["retain_barrier", "forget_barrier"]].mean()  # A→B = B→A: one curve
    table = per_seed.groupby(level=pair).agg(["mean", "std", "count"])
    table = pd.DataFrame({
        "seeds": table[("retain_barrier", "count")], "retain_barrier": table[("retain_barrier", "mean")],
        "retain_barrier_std": table[("retain_barrier", "std")], "forget_barrier": table[("forget_barrier", "mean")],
        "forget_barrier_std": table[("forget_barrier", "std")]}).reset_index()
    table = table.sort_values(["task", "setting", "ratio", "retain_barrier", "method_1", "method_2"])
    table["rank"] = table.groupby(["task", "setting", "ratio"]).cumcount() + 1
    return table[columns].reset_index(drop=True)


def seed_spread(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per setting, method pair, ratio and curve kind: B_r and B_f as mean and sample std over the
    seeds that finished, how many finished, and how many hold MCU."""
    keys = ["setting", "method_1", "method_2", "ratio", "curve"]
    ok = verdicts[verdicts["status"] == "ok"]
    spread = ok.groupby(keys)[["retain_barrier", "forget_barrier"]].agg(["mean", "std"])
    spread.columns = [f"{name}{'' if stat == 'mean' else '_std'}" for name, stat in spread.columns]
    counts = verdicts.groupby(keys).agg(seeds=("seed", "nunique"), MCU=("verdict", lambda v: int((v == "MCU").sum())))
    counts["finished"] = ok.groupby(keys)["seed"].nunique().reindex(counts.index).fillna(0).astype(int)
    return counts.join(spread).reset_index()
