"""The report's tables (``report.tables``): the metrics a task's rows hold, and the cells the page lists as
failed or missing, with the failure their artifacts recorded (the synthetic sweep: ``helpers.write_report_sweep``)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd

from mcu_ray.report.tables import load_sweep, metric_names, problem_cells
from mcu_ray.store import Store
from tests.helpers import REPORT_SWEEP as SWEEP


def test_metrics_of_an_unregistered_task_are_its_numeric_columns():
    frame = pd.DataFrame({"task": ["tofu"] * 2, "ratio": [1.0, 1.0], "seed": [0, 0], "t": [0.0, 1.0],
                          "status": ["ok", "ok"], "rouge_forget": [0.5, 0.4], "mcu": [True, False],
                          "other_task_metric": [np.nan, np.nan]})
    assert metric_names(frame, "tofu") == ["rouge_forget"]


def test_problem_cells_list_failed_and_missing_cells(report_storage, tmp_path):
    """spec.json plans two more cells than stored: one whose endpoint recorded a divergence, one never run."""
    root = tmp_path / "copy"
    shutil.copytree(report_storage, root)
    store = Store(str(root))
    stored = load_sweep(str(root), SWEEP).results.drop_duplicates("cell_id")
    planned = [{"key": r.cell_id, "task": "digits", "setting": r.setting, "method_1": r.method_1,
                "method_2": r.method_2, "ratio": r.ratio, "seed": 0, "artifacts": []} for r in stored.itertuples()]
    planned += [{"key": "cell-diverged", "task": "digits", "setting": "Met", "method_1": "ga", "method_2": "rl",
                 "ratio": 2.0, "seed": 1, "artifacts": ["orig-1", "ep-ga-1", "ep-rl-1"]},
                {"key": "cell-not-run", "task": "digits", "setting": "Rand", "method_1": "rl", "method_2": "rl",
                 "ratio": 10.0, "seed": 1, "artifacts": ["orig-1", "ep-rl-2"]}]
    store.save_artifact("orig-1", {"kind": "original"})
    store.save_artifact("ep-rl-1", {"kind": "endpoint", "status": "diverged", "reason": "loss is NaN at step 3"})
    plan = {"cells": [c["key"] for c in planned], "models": ["original-2", "retrained-2", "original-10",
                                                               "retrained-10"], "pathway": [], "cell_list": planned}
    store.write_bytes(json.dumps({"plan": plan}).encode(), SWEEP, "spec.json")
    problems = problem_cells(load_sweep(str(root), SWEEP), str(root))
    assert list(zip(problems["cell"], problems["status"], problems["seed"])) == [
        ("cell-not-run", "missing", 1), ("cell-diverged", "missing", 1), ("cell-Met-rl-ga-10", "failed", 0)]
    reasons = dict(zip(problems["cell"], problems["reason"]))
    assert reasons["cell-diverged"] == "ep-rl-1 diverged: loss is NaN at step 3"
    assert reasons["cell-not-run"].startswith("no rows: not run yet")
    assert list(problems["methods"]) == ["RL", "GA→RL", "RL→GA"]  # in Table 1's setting order, then by pair
