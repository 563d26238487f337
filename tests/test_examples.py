"""Per-example values: the rows of the examples table give back every stored metric of their model
point through the metric's own formula (MU-Bench's accuracy and loss, SalUn's SVC attack, sklearn's
ROC AUC), at the endpoints, the reference models and, with ``--per-example``, along the curves.
The TOFU counterpart lives in tests/tasks/test_tofu.py (its trained tiny models)."""
from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

import mcu_ray
from mcu_ray import jobs
from mcu_ray.placement import Placement
from mcu_ray.plan import make_plan
from mcu_ray.spec import load_spec
from mcu_ray.store import Store
from mcu_ray.tables import example_table
from mcu_ray.tasks.base import evaluate_one_by_one
from mcu_ray.tasks.digits import TASK as DIGITS
from tests.helpers import random_control_points, tiny_digits_task

README = Path(__file__).resolve().parents[1] / "README.md"


def assert_gives_classification_metrics(metrics: dict, frame: pd.DataFrame) -> None:
    """Every metric of one classifier point but ZRF (a divergence of whole matrices), recomputed from its
    examples rows with the sources' formulas."""
    split = {name: frame[frame["split"] == name].sort_values("example") for name in ("test", "retain", "forget")}
    for name, rows in split.items():
        assert (rows["example"].to_numpy() == np.arange(len(rows))).all(), name  # the split's rows, each once
        assert (rows["correct"] == (rows["predicted"] == rows["label"])).all(), name
        assert metrics[f"acc_{name}"] == pytest.approx(rows["correct"].mean(), abs=1e-6), name
        # MU-Bench's loss: the mean cross-entropy of the true class
        assert np.allclose(rows["loss"], -np.log(np.maximum(rows["prob"], 1e-12)), rtol=1e-5, atol=1e-6), name
        if name != "test":
            assert metrics[f"loss_{name}"] == pytest.approx(rows["loss"].mean(), rel=1e-6), name
    assert split["retain"]["mia_loss_score"].isna().all()  # the loss attack reads forget and test only
    # the loss attack (open-unlearning mia/utils.py): forget 0, test 1, scores signed like a loss
    forget, test = split["forget"]["mia_loss_score"].to_numpy(), split["test"]["mia_loss_score"].to_numpy()
    auc = roc_auc_score(np.r_[np.zeros(len(forget)), np.ones(len(test))], np.r_[forget, test])
    assert metrics["mia_loss"] == pytest.approx(auc, abs=1e-12)
    # SalUn's SVC_MIA: members Dr's first |test| rows, non-members test, target Df, on true-class confidence
    confidence = {name: rows["prob"].to_numpy()[:, None] for name, rows in split.items()}
    n_test = len(confidence["test"])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(np.r_[confidence["retain"][:n_test], confidence["test"]],
                                                      np.r_[np.ones(n_test), np.zeros(n_test)])
    assert metrics["mia_efficacy"] == pytest.approx(1 - attack.predict(confidence["forget"]).mean(), abs=1e-12)


def test_vmapped_points_carry_the_examples_of_one_by_one_and_each_gives_its_metrics():
    """Both evaluation paths of a curve (``tasks.vectorized`` and one point at a time) return the
    per-example values their metrics come from, and the same ones."""
    torch.set_num_threads(1)
    options = DIGITS.Options(width=8)
    data, placement = DIGITS.load(options, 10), Placement("cpu")
    context = DIGITS.eval_context(options, data, None, placement)
    control_points, ts = random_control_points(DIGITS, options), [0.0, 0.5, 0.9]
    batched = DIGITS.evaluate_curve(DIGITS.new_model(options, seed=0), options, data, context, placement,
                                    control_points, ts, vectorize=True)
    single = evaluate_one_by_one(DIGITS, DIGITS.new_model(options, seed=0), options, data, context, placement,
                                 control_points, ts)
    for one, many in zip(single, batched):
        frames = [example_table(row.examples, row["t"]).to_pandas() for row in (one, many)]
        assert len(frames[0]) == sum(len(data.split(s)["y"]) for s in ("test", "retain", "forget"))
        assert (frames[0]["t"] == one["t"]).all()
        for name in ("split", "example", "label"):
            assert frames[0][name].equals(frames[1][name]), name
        for name in ("prob", "loss", "mia_loss_score"):
            assert np.allclose(frames[0][name], frames[1][name], atol=1e-5, equal_nan=True), name
        for row, frame in zip((one, many), frames):
            assert_gives_classification_metrics(row, frame)


# ----------------------------------------------------------------------------- through the command line


def run_cli(spec_path, storage, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, "-m", "mcu_ray.sweep", str(spec_path), "--storage", str(storage),
                           "--num-cpus", "2", "--no-report", *args], capture_output=True, text=True, timeout=900,
                          env=env, cwd=spec_path.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def dry_status(spec_path, storage, *args) -> dict:
    from mcu_ray.sweep import cell_status

    spec = load_spec(str(spec_path))
    cells = cell_status(spec, make_plan(spec), str(storage), *args)
    return {(c["method_1"], c["method_2"]): c["status"] for c in cells}


def readme_query() -> str:
    """The README's DuckDB query, run here as a user would (the glob pointed at the test's store)."""
    text = README.read_text(encoding="utf-8")
    start = text.index('duckdb.sql("""', text.index("## Per-example values")) + len('duckdb.sql("""')
    return text[start:text.index('""")', start)]


@pytest.mark.ray
def test_a_digits_grid_with_per_example_stores_rows_that_give_back_its_metrics(tmp_path):
    """Rand ga/ga run first without --per-example, then the sweep with it: ga/ga's curves are evaluated
    again for their per-example values alone (no training, results untouched), rl/rl's curve points
    give theirs from the same evaluation as their metrics. Every model point's rows then give its
    stored metrics: endpoints, original and retrained, and each point of every curve."""
    spec_path, storage = tmp_path / "ex.yaml", tmp_path / "store"
    spec_path.write_text(yaml.safe_dump({"name": "ex", "settings": ["Rand"], "points": 3,
                                         "tasks": [tiny_digits_task()]}))
    run_cli(spec_path, storage, "--only", "method=ga")
    store = Store(str(storage))
    assert dry_status(spec_path, storage) == {("ga", "ga"): "done", ("rl", "rl"): "pending"}
    assert dry_status(spec_path, storage, True) == {("ga", "ga"): "pending", ("rl", "rl"): "pending"}
    first = {p: Path(p).stat().st_mtime_ns for name in ("results", "barriers") for p in store.table_files("ex", name)}
    out = run_cli(spec_path, storage, "--per-example").stdout
    assert "1 of the 2 cells to run have results but not the per-example values" in out
    assert dry_status(spec_path, storage, True) == {("ga", "ga"): "done", ("rl", "rl"): "done"}
    # ga/ga's results and barriers kept as they were
    assert {p: Path(p).stat().st_mtime_ns for p in first} == first

    spec = load_spec(str(spec_path))
    plan = make_plan(spec)
    curves = {key: plan.curves[key] for cell in plan.cells for _, key in cell.curves}
    methods = {key: plan.endpoints[curve.endpoint_1].method for key, curve in curves.items()}
    jobs_run = collections.Counter((r["key"], r["kind"]) for r in store.job_records())
    assert all(n == 1 for n in jobs_run.values())  # nothing built or evaluated twice
    for key, curve in curves.items():
        assert jobs_run[(key, "evaluation")] == 1
        # ga/ga's points evaluated once more for their examples alone; rl/rl's from the same evaluation
        assert jobs_run[(jobs.examples_key(curve), "evaluation")] == (methods[key] == "ga")

    examples = mcu_ray.load(str(storage), "ex", "examples")
    folder = storage / "ex" / "examples"
    assert len(duckdb.sql(f"SELECT * FROM read_parquet('{folder}/*.parquet')").df()) == len(examples)
    results = mcu_ray.load(str(storage), "ex", "results")
    assert (results["status"] == "ok").all()
    checked = 0
    for _, row in results.iterrows():
        curve = curves[row["curve_key"]]
        t = row["t"] if row["endpoint_1"] == curve.endpoint_1 else round(1 - row["t"], 6)  # the curve's own t
        frame = examples[(examples["key"] == curve.key) & np.isclose(examples["t"], t)]
        assert_gives_classification_metrics(row, frame)
        assert (frame["model"] == "curve").all() and set(frame["curve"]) == {row["curve"]}
        checked += 1
    assert checked == 2 * 2 * 3  # cells x curves x points
    for endpoint_key in {*results["endpoint_1"], *results["endpoint_2"]}:
        frame = examples[examples["key"] == endpoint_key]
        assert set(frame["model"]) == {"endpoint"} and frame["t"].isna().all()
        assert_gives_classification_metrics(store.read_meta(endpoint_key)["metrics"], frame)
    references = mcu_ray.load(str(storage), "ex", "references")
    for _, row in references.iterrows():
        frame = examples[(examples["key"] == row["key"]) & (examples["model"] == row["model"])]
        assert_gives_classification_metrics(row, frame)
        assert frame["code_commit"].notna().all()

    # the README's question: forget examples whose loss falls below the retrained model's inside a curve
    # while both ends of it have a higher loss than the retrained model's
    found = duckdb.sql(readme_query().replace("mcu_runs/quickstart/examples", str(folder))).df()
    retrained = examples[examples["model"] == "retrained"].set_index(["task", "ratio", "split", "example"])["loss"]
    forget = examples[(examples["model"] == "curve") & (examples["split"] == "forget")].copy()
    forget["below"] = forget["loss"].to_numpy() < retrained.loc[list(zip(
        forget["task"], forget["ratio"], forget["split"], forget["example"]))].to_numpy()
    by_hand = {}
    for (key, example), rows in forget.groupby(["key", "example"]):
        ends = rows[rows["t"].isin([0.0, 1.0])]
        if not ends["below"].any() and rows["below"].any():
            by_hand[(key, example)] = rows.loc[rows["below"], "t"].min()
    assert dict(zip(zip(found["curve_key"], found["example"]), found["first_t"])) == pytest.approx(by_hand)
