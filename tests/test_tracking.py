"""``tracking: mlflow | tensorboard``: the sweep file's field, its refusals, and a grid run through the
CLI whose TensorBoard events and MLflow runs hold each cell's identity and the numbers of its rows."""
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mcu_ray.errors import SpecError
from mcu_ray.plan import make_plan
from mcu_ray.runner import spec_hash
from mcu_ray.spec import TrackingSpec, parse_spec, resolved_sweep_file
from mcu_ray.store import Store
from mcu_ray.sweep import main
from mcu_ray.tables import read_table
from mcu_ray.tracking import cell_metrics
from tests.helpers import good, refused, sweep_file

# ----------------------------------------------------------------------------- the sweep file


def test_a_trackers_name_or_a_mapping_and_where_each_writes(tmp_path):
    assert parse_spec(good()).tracking == TrackingSpec()  # off unless asked
    mlflow = parse_spec({**good(), "tracking": "mlflow"}).tracking
    assert mlflow.location(str(tmp_path), "t") == (tmp_path / "t" / "mlruns").as_uri()
    tensorboard = parse_spec({**good(), "tracking": {"kind": "tensorboard"}}).tracking
    assert tensorboard.location(str(tmp_path), "t") == str(tmp_path / "t" / "tensorboard")
    server = parse_spec({**good(), "tracking": {"kind": "mlflow", "uri": "http://mlflow:5000",
                                                "experiment": "mcu"}}).tracking
    assert server.location("s3://bucket/runs", "t") == "http://mlflow:5000"  # any URI, storage anywhere
    with pytest.raises(SpecError, match="tracking.uri: missing; storage s3://bucket/runs is not a local folder"):
        mlflow.location("s3://bucket/runs", "t")


def test_tracking_changes_no_key_and_no_hash_and_prints_back():
    plain, tracked = parse_spec(good()), parse_spec({**good(), "tracking": {"kind": "mlflow", "uri": "sqlite:///m.db"}})
    assert spec_hash(plain) == spec_hash(tracked)  # every row's spec_hash, so stored rows stay current
    assert [c.key for c in make_plan(plain).cells] == [c.key for c in make_plan(tracked).cells]
    assert parse_spec(resolved_sweep_file(tracked)) == tracked  # --print-config writes it out


# (where, new value, field path the message must name, words the message must contain); as tests/test_spec.py
BAD_TRACKING = [
    ((["tracking"], "mlfow"), "tracking", "did you mean 'mlflow'?); allowed: none, mlflow, tensorboard"),
    ((["tracking"], {"kind": "tensorbord"}), "tracking.kind", "did you mean 'tensorboard'"),
    ((["tracking"], {"kind": "mlflow", "uri": 5000}), "tracking.uri", "expected a non-empty string"),
    ((["tracking"], {"kind": "mlflow", "url": "http://x"}), "tracking.url", "did you mean 'uri'"),
    ((["tracking"], ["mlflow"]), "tracking", "a tracker's name (none, mlflow, tensorboard) or a mapping"),
    ((["tracking"], {"kind": "tensorboard", "experiment": "x"}), "tracking.experiment", "only MLflow"),
    ((["tracking"], {"kind": "none", "uri": "file:/x"}), "tracking.uri", "nothing is tracked with kind none"),
]


@pytest.mark.parametrize("change,path,words", BAD_TRACKING, ids=[b[1] + ":" + b[2] for b in BAD_TRACKING])
def test_bad_tracking_names_field_value_and_allowed(change, path, words):
    error = refused(change, path, words)
    assert repr(error.value) in str(error)


def test_mlflow_asked_for_but_not_installed_exits_2_before_any_work(tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else find_spec(name, *a))
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**good(), "tracking": "mlflow"}))
    with pytest.raises(SystemExit) as exit_:
        main([str(path), "--storage", str(tmp_path / "store"), "--no-report"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "tracking: got 'mlflow'; MLflow is not installed here: pip install \"mcu_ray[tracking]\"" in err
    assert not (tmp_path / "store").exists()  # refused before anything was written


def test_a_diverged_curve_is_logged_as_not_ok_without_numbers():
    ident = {"cell_id": "cell-x", "status": "ok", "reason": ""}
    rows = [{**ident, "curve": "linear", "t": t, "loss_retain": 1.0 + t, "acc_test": 0.5} for t in (0.0, 0.5, 1.0)]
    rows += [{**ident, "curve": "bezier", "t": t, "loss_retain": math.nan, "acc_test": math.nan, "status": "diverged"}
             for t in (0.0, 0.5, 1.0)]
    barriers = [{**ident, "curve": "linear", "metric": m, "deviation": d, "curve_length": 2.5}
                for m, d in (("loss_retain", 0.25), ("acc_test", 0.0))]
    barriers += [{**ident, "curve": "bezier", "metric": m, "status": "diverged"} for m in ("loss_retain", "acc_test")]
    assert cell_metrics(rows, barriers) == {
        "linear": {"ok": 1.0, "length": 2.5, "deviation": {"loss_retain": 0.25, "acc_test": 0.0}},
        "bezier": {"ok": 0.0, "deviation": {}},
        "endpoint_1": {"acc_test": 0.5, "loss_retain": 1.0}, "endpoint_2": {"acc_test": 0.5, "loss_retain": 2.0}}


# ----------------------------------------------------------------------------- a grid through the CLI


def run_tracked_grid(tmp_path: Path, tracking: str) -> tuple[Store, str]:
    """The Rand cells (ga/ga, rl/rl) of a tiny digits sweep with ``tracking``, run by the CLI on 2 CPUs."""
    path = sweep_file(tmp_path, tracking=tracking)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([sys.executable, "-m", "mcu_ray.sweep", path, "--storage", str(tmp_path / "store"),
                           "--only", "setting=Rand", "--num-cpus", "2", "--no-report"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"tracking every cell with {tracking}: " in proc.stdout
    return Store(str(tmp_path / "store")), "cli"


def expected_per_cell(store: Store, sweep: str) -> dict[str, tuple[dict, dict]]:
    """cell_id -> (its identity as the trial's config holds it, flat metric -> value), from the tables."""
    results = read_table(store, sweep, "results").to_pandas()
    barriers = read_table(store, sweep, "barriers").to_pandas()
    out = {}
    for cell_id, rows in results.groupby("cell_id"):
        first = rows.iloc[0]
        identity = {"key": cell_id, "task": first["task"], "setting": first["setting"],
                    "methods": f"{first['method_1']}/{first['method_2']}", "ratio": first["ratio"],
                    "seed": first["seed"]}
        metrics = {"cell_seconds": first["cell_seconds"]}
        for _, b in barriers[barriers["cell_id"] == cell_id].iterrows():
            metrics |= {f"{b['curve']}/ok": 1.0, f"{b['curve']}/length": b["curve_length"],
                        f"{b['curve']}/deviation/{b['metric']}": b["deviation"]}
            for side, t in (("endpoint_1", 0.0), ("endpoint_2", 1.0)):
                metrics[f"{side}/{b['metric']}"] = rows[rows["t"] == t][b["metric"]].iloc[0]
        assert (rows["status"] == "ok").all()
        out[cell_id] = (identity, metrics)
    return out


def read_events(folder: Path) -> tuple[dict, dict]:
    """(scalar tag -> value, hparam -> value) of a TensorBoard run folder, read with tensorboardX's protobufs
    (the TFRecord framing: length, its CRC, the record, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    scalars, hparams = {}, {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i:i + 8])
            event = Event.FromString(data[i + 12:i + 12 + length])
            i += 12 + length + 4
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars[value.tag] = value.simple_value
                elif value.tag == "_hparams_/session_start_info":
                    info = HParamsPluginData.FromString(value.metadata.plugin_data.content).session_start_info
                    hparams = {k: v.string_value or v.number_value for k, v in info.hparams.items()}
    return scalars, hparams


@pytest.mark.ray
def test_tensorboard_logs_each_cell_with_its_identity_and_the_numbers_of_its_rows(tmp_path):
    store, sweep = run_tracked_grid(tmp_path, "tensorboard")
    expected = expected_per_cell(store, sweep)
    runs = {p.name: p for p in (tmp_path / "store" / sweep / "tensorboard").iterdir()}
    assert len(expected) == 2 and len(runs) == 2  # one run per cell
    for cell_id, (identity, metrics) in expected.items():
        run = next(folder for name, folder in runs.items() if name.endswith(cell_id))
        scalars, hparams = read_events(run)
        assert hparams == {f"cell/{k}": v for k, v in identity.items()}
        for name, value in metrics.items():  # TensorBoard keeps float32
            assert scalars[f"ray/tune/{name}"] == pytest.approx(value, rel=1e-6, abs=1e-7), name


@pytest.mark.ray
def test_mlflow_logs_a_run_per_cell_with_its_identity_and_the_numbers_of_its_rows(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason='MLflow is an optional extra: pip install "mcu_ray[tracking]"')
    from mlflow import MlflowClient

    store, sweep = run_tracked_grid(tmp_path, "mlflow")
    expected = expected_per_cell(store, sweep)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only when asked
    client = MlflowClient(tracking_uri=(tmp_path / "store" / sweep / "mlruns").as_uri())
    experiment = client.get_experiment_by_name(sweep)
    runs = {run.data.params["cell/key"]: run for run in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(expected)  # one run per cell
    for cell_id, (identity, metrics) in expected.items():
        run = runs[cell_id]
        assert run.info.status == "FINISHED" and run.info.run_name.endswith(cell_id)
        assert run.data.params == {f"cell/{k}": str(v) for k, v in identity.items()}
        assert run.data.tags["mcu_ray.sweep"] == sweep
        for name, value in metrics.items():
            assert run.data.metrics[name] == pytest.approx(value, rel=1e-12), name
