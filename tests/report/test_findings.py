"""Findings from hand-made rows: points that beat both endpoints, method similarity, spread over seeds.

Every expected number is worked out here from the rows' values (the definitions in
mcu_ray/report/findings.py's docstring), never read back from the module.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcu_ray.report.findings import best_points, outperforming_points, seed_spread, similarity_ranking, tradeoff

CELL = {"task": "digits", "setting": "Met", "method_1": "ga", "method_2": "rl", "ratio": 10.0, "seed": 0}
ACCURACIES = ("acc_forget", "acc_retain", "acc_test")  # forget ↓, retain ↑, test ↑


def _curve(cell_id: str, points: dict, status: str = "ok", curve: str = "linear", **cell) -> list[dict]:
    """Rows of one curve: ``points`` maps t to (acc_forget, acc_retain, acc_test)."""
    return [{**CELL, **cell, "cell_id": cell_id, "curve": curve, "t": t, "status": status,
             **dict(zip(ACCURACIES, values))} for t, values in points.items()]


START, END = (0.5, 0.8, 0.7), (0.4, 0.9, 0.75)
CURVE_A = {0.0: START, 0.25: END,  # equal to the t = 1 endpoint: beats it on nothing
           0.5: (0.3, 0.92, 0.8),  # better than both on all three
           0.6: (0.38, 0.91, 0.76),  # better than both on all three, by less
           0.75: (0.35, 0.95, 0.74),  # test accuracy below the t = 1 endpoint's
           0.9: (np.nan, 0.99, 0.99),  # a metric missing: never counts
           1.0: END}


def test_the_tradeoffs_follow_the_registered_directions():
    assert tradeoff("digits") == {"acc_forget": -1, "acc_retain": +1, "acc_test": +1}
    assert tradeoff("tofu") == {"forget_quality": +1, "model_utility": +1}
    assert tradeoff("unregistered") == {}


def test_points_beating_both_endpoints_with_their_gains():
    rows = pd.DataFrame(_curve("cell-a", CURVE_A)
                        + _curve("cell-b", CURVE_A, status="diverged")  # a failed curve never counts
                        + _curve("cell-c", {0.0: START, 0.5: (0.45, 0.85, 0.72), 1.0: END}))  # between the two
    found = outperforming_points(rows, "digits")
    assert list(found["cell_id"]) == ["cell-a", "cell-a"] and list(found["t"]) == [0.5, 0.6]
    for (_, row), point in zip(found.iterrows(), (CURVE_A[0.5], CURVE_A[0.6])):
        # gain over the better endpoint: forget accuracy lower is better, the others higher
        expected = {"acc_forget": min(START[0], END[0]) - point[0], "acc_retain": point[1] - max(START[1], END[1]),
                    "acc_test": point[2] - max(START[2], END[2])}
        for metric, gain in expected.items():
            assert row[f"gain {metric}"] == pytest.approx(gain)
        assert row["min gain"] == pytest.approx(min(expected.values()))
    best = best_points(found)
    assert len(best) == 1 and best.iloc[0]["t"] == 0.5  # its worst gain (0.02) beats t = 0.6's (0.01)
    assert (best.iloc[0]["points"], best.iloc[0]["first t"], best.iloc[0]["last t"]) == (2, 0.5, 0.6)


def test_tofu_tradeoff_is_forget_quality_and_model_utility():
    rows = pd.DataFrame([{**CELL, "task": "tofu", "cell_id": "cell-t", "curve": "bezier", "t": t, "status": "ok",
                          "forget_quality": fq, "model_utility": mu, "rouge_forget": 0.9}
                         for t, fq, mu in ((0.0, 0.01, 0.5), (0.5, 0.3, 0.55), (0.75, 0.3, 0.5), (1.0, 0.2, 0.4))])
    found = outperforming_points(rows, "tofu")
    assert list(found["t"]) == [0.5, 0.75]  # t = 0.75 ties t = 0's Model Utility and betters its FQ: it counts
    assert list(found["gain forget_quality"]) == pytest.approx([0.3 - max(0.01, 0.2)] * 2)
    assert list(found["gain model_utility"]) == pytest.approx([0.55 - max(0.5, 0.4), 0.5 - max(0.5, 0.4)])
    assert "gain rouge_forget" not in found.columns  # not part of TOFU's trade-off


def _verdict(setting, m1, m2, seed, b_r, b_f, curve="linear", status="ok", ratio=10.0) -> dict:
    return {"task": "digits", "setting": setting, "method_1": m1, "method_2": m2, "ratio": ratio, "seed": seed,
            "cell_id": f"{setting}-{m1}-{m2}-{ratio}-{seed}", "curve": curve, "retain_barrier": b_r,
            "forget_barrier": b_f, "status": status, "verdict": "MCU" if max(b_r, b_f) <= 0.01 else "barrier"}


GA_RL = [0.5, 0.7, 0.3]  # linear retain barrier per seed
GA_SU = [0.005, 0.01, 0.03]
RL_SU = [2.0, 1.0, 3.0]


def _verdicts() -> pd.DataFrame:
    rows = []
    for seed in range(3):
        for (m1, m2), values in {("ga", "rl"): GA_RL, ("ga", "su"): GA_SU, ("rl", "su"): RL_SU}.items():
            # A→B and B→A are one stored linear curve: the same numbers in both cells
            rows += [_verdict("Met", m1, m2, seed, values[seed], 0.1 * seed),
                     _verdict("Met", m2, m1, seed, values[seed], 0.1 * seed)]
        rows.append(_verdict("Met", "ga", "rl", seed, 9.0, 9.0, curve="bezier"))  # not a linear curve
        rows.append(_verdict("Rand", "ga", "ga", seed, 0.0, 0.0))  # same method: not a pair of methods
    rows.append(_verdict("Met", "rl", "su", 3, 99.0, 99.0, status="failed"))  # a failed seed is left out
    # Met-CL-Non-CL: GA(CL)→RL and RL(CL)→GA join different models, ranked apart
    rows += [_verdict("Met-CL-Non-CL", "ga", "rl", 0, 0.2, 0.0), _verdict("Met-CL-Non-CL", "rl", "ga", 0, 0.1, 0.0)]
    return pd.DataFrame(rows)


def test_similarity_ranks_method_pairs_by_linear_retain_barrier():
    ranking = similarity_ranking(_verdicts())
    met = ranking[ranking["setting"] == "Met"]
    assert [(r.method_1, r.method_2) for r in met.itertuples()] == [("ga", "su"), ("ga", "rl"), ("rl", "su")]
    assert list(met["rank"]) == [1, 2, 3]
    for pair, values in ((("ga", "su"), GA_SU), (("ga", "rl"), GA_RL), (("rl", "su"), RL_SU)):
        row = met[(met["method_1"] == pair[0]) & (met["method_2"] == pair[1])].iloc[0]
        assert row["seeds"] == 3
        assert row["retain_barrier"] == pytest.approx(np.mean(values))
        assert row["retain_barrier_std"] == pytest.approx(np.std(values, ddof=1))
        assert row["forget_barrier"] == pytest.approx(np.mean([0.0, 0.1, 0.2]))
    mixed = ranking[ranking["setting"] == "Met-CL-Non-CL"]
    assert [(r.method_1, r.method_2, r.rank) for r in mixed.itertuples()] == [("rl", "ga", 1), ("ga", "rl", 2)]
    assert mixed["retain_barrier_std"].isna().all()  # one seed: no spread


def test_seed_spread_is_mean_and_sample_std_of_the_seeds_that_finished():
    spread = seed_spread(_verdicts())
    row = spread[(spread["setting"] == "Met") & (spread["method_1"] == "rl") & (spread["method_2"] == "su")
                 & (spread["curve"] == "linear")].iloc[0]
    assert (row["seeds"], row["finished"]) == (4, 3)  # seed 3 failed
    assert row["retain_barrier"] == pytest.approx(np.mean(RL_SU))
    assert row["retain_barrier_std"] == pytest.approx(np.std(RL_SU, ddof=1))
    assert row["forget_barrier_std"] == pytest.approx(np.std([0.0, 0.1, 0.2], ddof=1))
    ga_su = spread[(spread["setting"] == "Met") & (spread["method_1"] == "ga") & (spread["method_2"] == "su")
                   & (spread["curve"] == "linear")].iloc[0]
    assert ga_su["MCU"] == sum(max(b, 0.1 * s) <= 0.01 for s, b in enumerate(GA_SU)) == 1  # seed 0 alone
