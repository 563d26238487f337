"""The result tables: one schema per table, flat files any reader loads in one line, verdicts
decided when read. The last tests run a mixed digits + TOFU sweep through the CLI."""
from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mcu_ray
from mcu_ray import tables
from mcu_ray.spec import Tolerances
from mcu_ray.store import Store
from mcu_ray.tasks import TASKS
from tests.helpers import REPO

TOFU_ONLY = [m for m in TASKS["tofu"].metric_directions if m not in TASKS["digits"].metric_directions]


def duck(folder) -> pd.DataFrame:
    """The README's DuckDB one-liner."""
    return duckdb.sql(f"SELECT * FROM read_parquet('{folder}/**/*.parquet', hive_partitioning = true)").df()


# ----------------------------------------------------------------------------- schemas
def test_every_registered_metric_is_a_declared_column_of_the_metric_tables():
    for task in TASKS.values():
        for metric in task.metric_directions:
            assert metric in tables.METRICS, metric
            assert tables.direction(metric) == task.metric_directions[metric]
            for name in ("results", "references", "pathway"):
                assert tables.SCHEMAS[name].field(metric).type == pa.float64()
    assert set(tables.metric_names()) == set(tables.METRICS)  # nothing declared that no task writes
    assert not {"retain_barrier", "forget_barrier", "mcu", "tolerance", "barrier"} & set(tables.SCHEMAS["barriers"].names)


def test_data_dictionary_is_current():
    assert (REPO / "docs" / "tables.md").read_text(encoding="utf-8") == tables.data_dictionary(), \
        "regenerate it: python -m mcu_ray.tables > docs/tables.md"


def test_rows_of_two_tasks_share_one_schema_and_load_in_one_line(tmp_path):
    store = Store(str(tmp_path))
    digits = {"task": "digits", "setting": "Rand", "cell_id": "cell-a", "ratio": 5.0, "seed": 0, "t": 0.0,
              **{m: 0.5 for m in TASKS["digits"].metric_directions}, "status": "ok"}
    tofu = {"task": "tofu", "setting": "Met", "cell_id": "cell-b", "ratio": 10.0, "seed": 1, "t": 1.0,
            **{m: 0.25 for m in TASKS["tofu"].metric_directions}, "status": "ok"}
    tables.write_table(store, "sw", "results", [digits], "cell-a")
    tables.write_table(store, "sw", "results", [tofu], "cell-b")
    folder = tmp_path / "sw" / "results"
    for frame in (pd.read_parquet(folder), duck(folder), mcu_ray.load(str(tmp_path), "sw")):
        assert list(frame.columns) == tables.SCHEMAS["results"].names
        frame = frame.set_index("task")
        assert frame.loc["tofu", TOFU_ONLY].notna().all() and frame.loc["digits", TOFU_ONLY].isna().all()
        assert frame.loc["digits", "acc_test"] == 0.5 and frame.loc["tofu", "forget_quality"] == 0.25
    # one file read alone has every column too
    assert pq.read_table(folder / "cell-a.parquet").schema == tables.SCHEMAS["results"]
    with pytest.raises(ValueError, match="no columns.*'mcu'"):
        tables.write_table(store, "sw", "results", [{**digits, "mcu": True}], "cell-c")


def test_tables_of_the_hive_layout_are_read_and_moved_flat(tmp_path):
    """A store written before: task=/setting= folders, task and setting inside the files, a verdict
    repeated on every barrier row. Read as it is; a sweep run moves it (then pandas reads it)."""
    old = tmp_path / "sw" / "barriers" / "task=digits" / "setting=Rand"
    old.mkdir(parents=True)
    pq.write_table(pa.table({"task": ["digits"], "setting": ["Rand"], "cell_id": ["cell-a"], "curve": ["linear"],
                             "metric": ["loss_retain"], "deviation": [0.5], "mcu": [False], "tolerance": [0.01],
                             "status": ["ok"]}), old / "cell-a.parquet")
    store = Store(str(tmp_path))
    assert tables.read_table(store, "sw", "barriers").to_pylist()[0]["deviation"] == 0.5
    assert not store.has_table("sw", "barriers", "cell-a")
    assert tables.upgrade_layout(store, "sw") == 1
    assert store.has_table("sw", "barriers", "cell-a") and not (tmp_path / "sw" / "barriers" / "task=digits").exists()
    frame = pd.read_parquet(tmp_path / "sw" / "barriers")
    assert list(frame.columns) == tables.SCHEMAS["barriers"].names and frame.loc[0, "deviation"] == 0.5
    assert tables.upgrade_layout(store, "sw") == 0


# ----------------------------------------------------------------------------- verdicts
def _barrier_rows() -> pd.DataFrame:
    """Two curves of one TOFU cell: deviations of 0.02 nats (retain) and 0 (forget) on the linear one,
    Forget Quality falling from 0.5 / 0.4 at the endpoints to 0.01 on the Bezier one; the
    Bezier curve's status failed on a second cell."""
    def row(cell, curve, metric, deviation, minimum=0.0, start=0.0, end=0.0, status="ok"):
        return {"task": "tofu", "cell_id": cell, "curve": curve, "metric": metric, "deviation": deviation,
                "min": minimum, "start": start, "end": end, "status": status}

    return pd.DataFrame([
        row("c1", "linear", "loss_retain", 0.02), row("c1", "linear", "loss_forget", 0.0),
        row("c1", "linear", "rouge_retain", 0.015), row("c1", "linear", "forget_quality", 0.1, 0.3, 0.5, 0.4),
        row("c1", "bezier", "loss_retain", 0.0), row("c1", "bezier", "loss_forget", 0.005),
        row("c1", "bezier", "forget_quality", 0.3, 0.01, 0.5, 0.4),
        row("c2", "bezier", "loss_retain", np.nan, status="diverged"),
        row("c2", "bezier", "loss_forget", np.nan, status="diverged"),
    ])


def test_verdicts_follow_the_tolerances_of_the_moment():
    rows = _barrier_rows()
    default = tables.verdicts(rows, Tolerances()).set_index(["cell_id", "curve"])
    assert len(default) == 3  # once per curve, not per metric
    assert default.loc[("c1", "linear"), "retain_barrier"] == 0.02
    assert not default.loc[("c1", "linear"), "mcu"] and default.loc[("c1", "bezier"), "mcu"]
    assert pd.isna(default.loc[("c2", "bezier"), "mcu"])  # failed: no verdict
    loose = tables.verdicts(rows, Tolerances(loss=0.05)).set_index(["cell_id", "curve"])
    assert loose.loc[("c1", "linear"), "mcu"] and loose.loc[("c1", "linear"), "tolerance"] == 0.05


def test_each_metric_family_has_its_own_tolerance_and_forget_quality_a_significance_level():
    flags = tables.with_barriers(_barrier_rows(), Tolerances()).set_index(["cell_id", "curve", "metric"])["barrier"]
    assert flags[("c1", "linear", "rouge_retain")]  # 0.015 > 0.01 (score)
    assert not flags[("c1", "linear", "forget_quality")]  # dips by 0.1 but stays above 0.05: no evidence
    assert flags[("c1", "bezier", "forget_quality")]  # falls to 0.01 between endpoints at 0.5 and 0.4
    assert pd.isna(flags[("c2", "bezier", "loss_retain")])
    changed = tables.with_barriers(_barrier_rows(), Tolerances(score=0.02, forget_quality=0.005))
    flags = changed.set_index(["cell_id", "curve", "metric"])["barrier"]
    assert not flags[("c1", "linear", "rouge_retain")] and not flags[("c1", "bezier", "forget_quality")]


def test_tolerances_come_from_the_sweep_file_unless_given(tmp_path):
    store = Store(str(tmp_path))
    assert tables.tolerances_of(store, "sw") == Tolerances()
    spec = {"tolerance": {"loss": 0.1, "accuracy": 0.02, "score": 0.01, "forget_quality": 0.05}}
    store.write_bytes(json.dumps({"spec": spec}).encode(), "sw", "spec.json")
    assert tables.tolerances_of(store, "sw") == Tolerances(loss=0.1, accuracy=0.02)
    assert tables.tolerances_of(store, "sw", 0.3) == Tolerances(loss=0.3, accuracy=0.02)
    assert tables.tolerances_of(store, "sw", {"score": 0.2}) == Tolerances(loss=0.1, accuracy=0.02, score=0.2)
    store.write_bytes(json.dumps({"spec": {"tolerance": 0.2}}).encode(), "sw", "spec.json")  # an older spec.json
    assert tables.tolerances_of(store, "sw") == Tolerances(loss=0.2)


# ----------------------------------------------------------------------------- a mixed sweep, end to end
MIXED = {
    "name": "mixed", "settings": ["Rand"], "points": 3,
    "resources": {"max_concurrent_trials": 2, "trial_cpus": 0.5, "eval_cpus": 0.5},
    "tasks": [
        {"name": "digits", "ratios": [5], "methods": ["ga", "pathway_ga"], "options": {"epochs": 3, "width": 4},
         "hparams": {"ga": {"epochs": 1}, "pathway_ga": {"epochs": 1, "select_points": 4}},
         "curve_fit": {"epochs": 1}},
        {"name": "tofu", "ratios": [10], "methods": ["gd"],
         "options": {"synthetic_authors": 5, "eval_size": 8, "n_embd": 32, "n_layer": 1, "vocab_size": 400,
                     "epochs": 5, "max_new_tokens": 8},
         "hparams": {"gd": {"epochs": 1}}, "curve_fit": {"epochs": 1}},
    ],
}


def run_sweep(tmp_path, spec: dict, capsys) -> str:
    """``python -m mcu_ray.sweep`` in this process (on the test's Ray instance, which it shuts down)."""
    import yaml

    from mcu_ray.sweep import main

    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    code = main([str(path), "--storage", str(tmp_path / "store"), "--report-dir", str(tmp_path / "report")])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A folder holding the mixed sweep's store and report, run once for the tests below."""
    import ray
    import yaml

    from mcu_ray.sweep import main

    tmp_path = tmp_path_factory.mktemp("mixed")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(MIXED))
    assert main([str(path), "--storage", str(tmp_path / "store"), "--report-dir", str(tmp_path / "report")]) == 0
    return tmp_path


@pytest.mark.ray
def test_every_table_of_a_mixed_sweep_loads_in_one_line(mixed):
    """pandas and DuckDB read each table folder whole: every row, every column, TOFU metrics
    filled on TOFU rows, digits metrics on digits rows."""
    store_dir, store = mixed / "store", Store(str(mixed / "store"))
    # digits: Rand pairs ga/ga and pathway_ga/pathway_ga, tofu: gd/gd; linear and Bezier; 3 points
    rows = {"results": 3 * 2 * 3, "barriers": 2 * 2 * 8 + 1 * 2 * 19,  # per curve, one row per metric of its task
            "references": 2 * 2,  # original and retrained, per task
            "pathway": 2 * (4 + 4)}  # seeds 0 and 1: original, source, pathway, retrained + 4 curve points
    for name, schema in ((name, tables.SCHEMAS[name]) for name in rows):
        folder = store_dir / "mixed" / name
        assert tables.read_table(store, "mixed", name).num_rows == rows[name], name
        for frame in (pd.read_parquet(folder), duck(folder), mcu_ray.load(str(store_dir), "mixed", name)):
            assert len(frame) == rows[name], name
            assert list(frame.columns)[:len(schema.names)] == schema.names, name  # load adds derived ones
            assert set(frame["task"]) == ({"digits"} if name == "pathway" else {"digits", "tofu"}), name
            if name == "barriers":
                assert frame["deviation"].notna().all()
                continue
            tofu, digits = frame[frame["task"] == "tofu"], frame[frame["task"] == "digits"]
            assert tofu[list(TASKS["tofu"].metric_directions)].notna().all().all(), name
            assert digits[list(TASKS["digits"].metric_directions)].notna().all().all(), name
            assert digits[TOFU_ONLY].isna().all().all(), name
    # per-example values: the models' (endpoints, original, retrained), no curve points without --per-example
    count, folder = tables.read_table(store, "mixed", "examples").num_rows, store_dir / "mixed" / "examples"
    for frame in (pd.read_parquet(folder), duck(folder), mcu_ray.load(str(store_dir), "mixed", "examples")):
        assert len(frame) == count > 0 and list(frame.columns)[:len(tables.SCHEMAS["examples"])] == \
            tables.SCHEMAS["examples"].names
        assert set(frame["task"]) == {"digits", "tofu"} and set(frame["model"]) == {"endpoint", "original", "retrained"}
    per_task = mcu_ray.load(str(store_dir), "mixed", "barriers").groupby("task")["metric"].nunique()
    assert per_task["tofu"] == len(TASKS["tofu"].metric_directions)
    assert per_task["digits"] == len(TASKS["digits"].metric_directions)


@pytest.mark.ray
def test_a_new_tolerance_redecides_every_verdict_and_runs_nothing(mixed, tmp_path, capsys):
    """The report CLI with --tolerance, then a rerun of the sweep with a changed tolerance: verdicts
    change, the job ledger and the artifacts do not."""
    from mcu_ray.report.__main__ import main as report

    storage, store = str(mixed / "store"), Store(str(mixed / "store"))
    ledger = sorted(p for p in store.list_files("jobs"))
    artifacts = {p: Path(p).stat().st_mtime_ns for p in store.list_files("artifacts")}
    stored = {name: tables.read_table(store, "mixed", name).to_pandas() for name in tables.TABLES}
    files = {p: Path(p).stat().st_mtime_ns for name in tables.TABLES for p in store.table_files("mixed", name)}
    curves = mcu_ray.load(storage, "mixed", "verdicts")
    assert len(curves) == 6 and (curves["status"] == "ok").all()
    worst = curves[["retain_barrier", "forget_barrier"]].max(axis=1)
    assert (worst > 0).any()  # some curve strays from its chord, so a zero tolerance breaks MCU there

    def page_verdicts(out: Path) -> set[str]:
        """The verdict words of the report's barrier tables."""
        text = (out / "index.html").read_text()
        words = set(re.findall(r"<td>(barrier|cliff|barrier \+ cliff|no MCU)</td>", text))
        return words | ({"MCU"} if '<td class="MCU">MCU</td>' in text else set())

    assert report([storage, "mixed", "--tolerance", "0", "--out", str(tmp_path / "strict")]) == 0
    assert report([storage, "mixed", "--tolerance", str(worst.max() + 1), "--out", str(tmp_path / "loose")]) == 0
    assert page_verdicts(tmp_path / "strict") - {"MCU"}  # a barrier or a cliff somewhere
    assert page_verdicts(tmp_path / "loose") == {"MCU"}
    assert not mcu_ray.load(storage, "mixed", "verdicts", tolerance=0)["mcu"].all()
    assert mcu_ray.load(storage, "mixed", "verdicts", tolerance=worst.max() + 1)["mcu"].all()

    # the sweep rerun with a looser tolerance: every cell skipped, the verdicts follow it
    out = run_sweep(mixed, {**MIXED, "tolerance": float(worst.max() + 1)}, capsys)
    assert "3 of 3 cells already have results" in out and "0 cells run" in out
    assert page_verdicts(mixed / "report") == {"MCU"}
    assert mcu_ray.load(storage, "mixed", "verdicts")["mcu"].all()  # the sweep file's tolerance, now
    assert sorted(store.list_files("jobs")) == ledger  # no job ran
    assert {p: Path(p).stat().st_mtime_ns for p in store.list_files("artifacts")} == artifacts
    # no table rewritten; the same spec hash (tolerances are not in it)
    assert {p: Path(p).stat().st_mtime_ns for name in tables.TABLES for p in store.table_files("mixed", name)} == files
    for name, frame in stored.items():
        assert tables.read_table(store, "mixed", name).to_pandas().equals(frame), name
    spec_hash = json.loads(store.read_bytes("mixed", "spec.json"))["spec_hash"]
    assert set(stored["results"]["spec_hash"]) == {spec_hash}
