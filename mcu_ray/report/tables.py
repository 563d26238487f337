"""The result tables of one sweep, shaped for the report (pandas only, no drawing).

Reads results / barriers / references / pathway through ``mcu_ray.tables``, names each
task's metrics, orders settings as in paper Table 1, and decides one verdict per (cell,
curve) from the stored deviations with the report's tolerances. Failed or diverged cells
are kept: they are shown, never dropped.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from mcu_ray.barriers import verdict_word
from mcu_ray.plan import SETTINGS_TABLE
from mcu_ray.provenance import ROW_FIELDS as PROVENANCE_FIELDS
from mcu_ray.spec import Tolerances
from mcu_ray.store import Store
from mcu_ray.tables import read_table, tolerances_of, verdicts as decide_verdicts, with_barriers
from mcu_ray.tasks import TASKS

# Columns that identify a row rather than measure something.
IDENTIFIERS = ("sweep", "spec_hash", "code_version", "cell_id", "task", "setting", "method_1", "method_2",
               "optimizer_1", "optimizer_2", "curriculum_1", "curriculum_2", "ratio", "seed", "curve",
               "curve_key", "t", "status", "model", "key", "endpoint_1", "endpoint_2", "seed_1", "seed_2",
               *PROVENANCE_FIELDS, "cell_seconds")
CELL = ["task", "setting", "method_1", "method_2", "ratio", "seed", "cell_id"]
CURVES = ("linear", "bezier", "polychain")  # drawing and table order; other curve kinds follow
NO_CURVE = "—"  # curve of a cell that failed before any curve was evaluated
VERDICT_COLUMNS = ["retain_barrier", "forget_barrier", "mcu", "tolerance", "status"]  # of mcu_ray.tables.verdicts


class EmptySweepError(ValueError):
    """A sweep has no result rows to report on."""


@dataclass(frozen=True)
class SweepTables:
    results: pd.DataFrame  # one row per cell, curve, t
    barriers: pd.DataFrame  # one row per cell, curve, metric, with its barrier flag (mcu_ray.tables)
    references: pd.DataFrame  # one row per task, ratio, model (original | retrained)
    pathway: pd.DataFrame  # one row per pathway endpoint and model (source | pathway | retrained)
    tolerances: Tolerances = Tolerances()  # what the verdicts are decided with
    planned: tuple = ()  # the sweep file's cells (spec.json's plan ``cell_list``: fields and artifact keys)


def load_sweep(storage: str, sweep: str, tolerance=None) -> SweepTables:
    """The tables of ``<storage>/<sweep>``; raises EmptySweepError without results.

    ``tolerance``: a number (losses) or a mapping per metric family over the sweep file's
    (``mcu_ray.tables.tolerances_of``); None: the sweep file's.
    """
    store = Store(storage)
    results = read_table(store, sweep, "results")
    if results.num_rows == 0:
        raise EmptySweepError(f"no results for sweep {sweep!r} in storage {storage!r} "
                              f"(looked for {storage}/{sweep}/results/*.parquet)")
    tolerances = tolerances_of(store, sweep, tolerance)
    found = SweepTables(
        results=results.to_pandas(),
        barriers=with_barriers(read_table(store, sweep, "barriers").to_pandas(), tolerances),
        references=read_table(store, sweep, "references").to_pandas(),
        pathway=read_table(store, sweep, "pathway").to_pandas(),
        tolerances=tolerances,
    )
    plan = json.loads(store.read_bytes(sweep, "spec.json")).get("plan") if store.exists(sweep, "spec.json") else None
    return current_rows(found, plan) if plan else found


def current_rows(tables: SweepTables, plan: dict) -> SweepTables:
    """Only the rows of the sweep's current plan (``spec.json``): cells, reference models and
    pathway endpoints that an edited sweep file dropped stay in storage but leave the report."""
    results = tables.results[tables.results["cell_id"].isin(plan["cells"])]
    if results.empty:
        raise EmptySweepError(f"none of the {len(plan['cells'])} cells of the current sweep file has results yet")
    return SweepTables(
        results=results,
        barriers=tables.barriers[tables.barriers["cell_id"].isin(plan["cells"])],
        references=tables.references[tables.references["key"].isin(plan["models"])],
        pathway=tables.pathway[tables.pathway["endpoint"].isin(plan["pathway"])],
        tolerances=tables.tolerances,
        planned=tuple(plan.get("cell_list", ())),  # absent from spec.json files written before it
    )


PROBLEM_COLUMNS = ["task", "setting", "methods", "ratio (%)", "seed", "cell", "status", "reason"]


def problem_cells(tables: SweepTables, storage: str) -> pd.DataFrame:
    """The cells to look at: those whose rows say failed or diverged (with the stored reason), and
    those the sweep file plans that have no rows yet (status 'missing': not run, or the trial stopped
    before writing; the reason is the failure one of its artifacts recorded, when one did)."""
    results = tables.results
    bad = results[results["status"] != "ok"]
    rows = []
    for cell_id, of_cell in bad.groupby("cell_id", sort=False):
        first = of_cell.iloc[0]
        reasons = [r for r in of_cell["reason"].dropna().unique() if r]
        rows.append({"task": first["task"], "setting": first["setting"],
                     "methods": pair_label(first["method_1"], first["method_2"]), "ratio (%)": first["ratio"],
                     "seed": first["seed"], "cell": cell_id, "status": combined_status(of_cell["status"]),
                     "reason": "; ".join(reasons)})
    have, store, recorded = set(results["cell_id"]), Store(storage), {}

    def why(keys) -> str:  # cells share artifacts: each meta.json is read once
        for key in keys:
            if key not in recorded:
                recorded[key] = store.first_failed(key)
            if recorded[key]:
                return str(recorded[key])
        return "no rows: not run yet, or its trial stopped before writing them"

    for cell in tables.planned:
        if cell["key"] not in have:
            rows.append({"task": cell["task"], "setting": cell["setting"],
                         "methods": pair_label(cell["method_1"], cell["method_2"]), "ratio (%)": cell["ratio"],
                         "seed": cell["seed"], "cell": cell["key"], "status": "missing",
                         "reason": why(cell["artifacts"])})
    frame = pd.DataFrame(rows, columns=PROBLEM_COLUMNS)
    order = {s: i for i, s in enumerate(ordered_settings(frame["setting"]))}
    return (frame.assign(order=frame["setting"].map(order))
            .sort_values(["task", "order", "methods", "ratio (%)", "seed"]).drop(columns="order"))


def metric_names(frame: pd.DataFrame, task: str) -> list[str]:
    """The task's figure metrics present in ``frame``: registered order, else numeric columns it fills."""
    rows = frame[frame["task"] == task]
    if task in TASKS:
        return [m for m in TASKS[task].figure_metrics if m in rows.columns]
    return [c for c in rows.columns if c not in IDENTIFIERS and pd.api.types.is_numeric_dtype(rows[c])
            and not pd.api.types.is_bool_dtype(rows[c]) and rows[c].notna().any()]


def endpoint_table(results: pd.DataFrame, task: str) -> pd.DataFrame:
    """Every unlearned model of a task once: its metrics are the t=0 / t=1 rows of its curves."""
    rows = results[(results["task"] == task) & (results["status"] == "ok")]
    if "endpoint_1" not in rows.columns:
        return pd.DataFrame()
    metrics = metric_names(rows, task)
    ends = []
    for side, t in (("1", 0.0), ("2", 1.0)):
        at = rows[rows["t"] == t]
        ends.append(pd.DataFrame({
            "ratio (%)": at["ratio"], "method": at[f"method_{side}"].str.upper(), "optimizer": at[f"optimizer_{side}"],
            "curriculum": at[f"curriculum_{side}"], "seed": at[f"seed_{side}"], "key": at[f"endpoint_{side}"],
            **{m: at[m] for m in metrics}}))
    table = pd.concat(ends).drop_duplicates("key")
    return table.sort_values(["ratio (%)", "method", "optimizer", "curriculum", "seed"]).drop(columns="key")


PATHWAY_MODELS = ("original", "source", "pathway", "retrained")
PATHWAY_LABELS = ("ratio (%)", "source", "model", "seeds", "t*", "gap to retrained")  # pathway_table's non-metrics


def pathway_table(pathway: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per forget ratio and source method (with its optimiser / curriculum variant): the original,
    the source endpoint, the pathway model at t* and the retrained model on every metric, with
    the mean gap to the retrained model; means over seeds."""
    rows = with_variant(pathway[(pathway["task"] == task) & pathway["model"].isin(PATHWAY_MODELS)])
    if rows.empty:
        return pd.DataFrame()
    metrics = metric_names(rows, task)
    table = (rows.groupby(["ratio", "source_method", "model"], sort=False)
             .agg(seeds=("seed", "nunique"), t_star=("t_star", "mean"), gap=("gap_to_retrained", "mean"),
                  **{m: (m, "mean") for m in metrics})
             .reset_index())
    table.loc[table["model"] != "pathway", "t_star"] = float("nan")  # t* belongs to the pathway model
    table["order"] = table["model"].map({m: i for i, m in enumerate(PATHWAY_MODELS)})
    table = table.sort_values(["ratio", "source_method", "order"]).drop(columns="order")
    table = table.rename(columns={"ratio": "ratio (%)", "source_method": "source", "t_star": "t*",
                                  "gap": "gap to retrained"})
    return table[[*PATHWAY_LABELS, *metrics]]


def with_variant(rows: pd.DataFrame) -> pd.DataFrame:
    """``source_method`` named with its variant, so FO, SO and CL pathways are never pooled:
    ``ga``, ``ga+SO``, ``ga+CL``."""
    if rows.empty:
        return rows
    suffix = (rows["optimizer"].map(lambda o: "" if o == "fo" else f"+{o.upper()}")
              + rows["curriculum"].map(lambda c: "" if c == "none" else f"+{c.upper()}"))
    return rows.assign(source_method=rows["source_method"] + suffix)


def pathway_curves(pathway: pd.DataFrame, task: str) -> pd.DataFrame:
    """Mean gap to the retrained model along t of the pathway curves, per ratio and source (mean over seeds)."""
    rows = with_variant(pathway[(pathway["task"] == task) & (pathway["model"] == "curve")])
    return rows.groupby(["ratio", "source_method", "t"]).agg(gap=("gap_to_retrained", "mean")).reset_index()


def _in_order(names, order) -> list[str]:
    """The distinct ``names`` in ``order``; unknown ones after, alphabetically."""
    names = set(names)
    return [n for n in order if n in names] + sorted(names - set(order))


def ordered_settings(names) -> list[str]:
    """Settings in paper Table 1 order; unknown ones after, alphabetically."""
    return _in_order(names, SETTINGS_TABLE)


def ordered_curves(names) -> list[str]:
    return _in_order(names, CURVES)


def method_pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """The (method_1, method_2) pairs of ``frame``, sorted."""
    return sorted(set(zip(frame["method_1"], frame["method_2"])))


def pair_label(method_1: str, method_2: str) -> str:
    """``GA`` for a same-method pair (Rand-type settings), ``GA→RL`` for an ordered pair."""
    return method_1.upper() if method_1 == method_2 else f"{method_1.upper()}→{method_2.upper()}"


def combined_status(statuses) -> str:
    """'ok' when every row is ok, else the first other status met (failed, diverged, ...)."""
    others = [s for s in statuses if s != "ok" and isinstance(s, str)]
    return others[0] if others else "ok"


def curve_verdicts(results: pd.DataFrame, barriers: pd.DataFrame, tolerances: Tolerances) -> pd.DataFrame:
    """One row per (cell, curve): barriers, MCU flag, status and a verdict word, decided from the
    stored deviations with ``tolerances`` (``mcu_ray.tables.verdicts``).

    The rows come from the results table, so a cell that failed before its barriers
    were computed is still listed (status 'failed', NaN barriers; curve '—' if it
    failed before any curve).
    """
    runs = (results.assign(curve=results["curve"].fillna(NO_CURVE))
            .groupby([*CELL, "curve"], dropna=False, sort=False)["status"].agg(combined_status).reset_index())
    per_curve = decide_verdicts(barriers, tolerances)[["cell_id", "curve", *VERDICT_COLUMNS]]
    merged = runs.merge(per_curve, on=["cell_id", "curve"], how="left", suffixes=("", "_barrier"))
    merged["status"] = [combined_status([a, b]) for a, b in zip(merged["status"], merged["status_barrier"])]
    merged["verdict"] = [_verdict(row) for row in merged.itertuples()]
    return merged.drop(columns="status_barrier")


def _verdict(row) -> str:
    """'MCU'; else what breaks it: 'barrier' (retain side), 'cliff' (forget side), both; or the status."""
    if row.status != "ok":
        return row.status
    if pd.isna(row.mcu):
        return "no barriers"
    if row.mcu:
        return "MCU"
    word = verdict_word(row.retain_barrier, row.forget_barrier, row.tolerance)
    return "no MCU" if word == "MCU" else word


def panel_verdict(verdicts) -> str:
    """The verdict of one curve across seeds: the shared word, else how many seeds hold MCU."""
    verdicts = list(verdicts)
    if len(set(verdicts)) == 1:
        return verdicts[0]
    return f"MCU {verdicts.count('MCU')}/{len(verdicts)}"


def retrained_values(references: pd.DataFrame, task: str, ratio: float) -> dict:
    """Metric values of the model retrained without the forget set, for one task and ratio."""
    rows = references[(references["task"] == task) & (references["ratio"] == ratio)
                      & (references["model"] == "retrained")]
    if rows.empty:
        return {}
    return {m: float(rows.iloc[0][m]) for m in metric_names(rows, task) if pd.notna(rows.iloc[0][m])}


PROVENANCE_LABELS = {"code_commit": "commit", "code_dirty": "dirty", "code_version": "mcu_ray",
                     "torch_version": "torch", "transformers_version": "transformers", "ray_version": "ray",
                     "peft_version": "peft", "python_version": "python", "device_name": "device",
                     "precision": "precision"}


def provenance_table(results: pd.DataFrame) -> pd.DataFrame:
    """What computed a sweep's result rows: one row per distinct commit, dirty flag, library versions,
    device and precision, with the cells and rows it computed and the wall time of those cells'
    trials (summed; a cell whose rows came from two devices counts in both)."""
    keys = list(PROVENANCE_LABELS)
    found = []
    for values, rows in results.groupby(keys, dropna=False, sort=True):
        cells = rows.drop_duplicates("cell_id")
        found.append({**dict(zip(keys, values)), "cells": len(cells), "rows": len(rows),
                      "trial wall time (s)": cells["cell_seconds"].sum(min_count=1)})
    table = pd.DataFrame(found, columns=[*keys, "cells", "rows", "trial wall time (s)"]).rename(
        columns=PROVENANCE_LABELS)
    table["commit"] = [c[:12] if isinstance(c, str) else c for c in table["commit"]]  # 'unknown' stays whole
    return table
