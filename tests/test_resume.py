"""Kill the driver with SIGKILL mid-grid, rerun the same command: every row exactly once, and
no training job that had finished runs again."""
import collections
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from mcu_ray.store import Store
from mcu_ray.tables import read_table
from tests.helpers import tiny_digits_task

pytestmark = pytest.mark.ray

SPEC = {"name": "kill", "settings": ["Rand", "Met"], "points": 4, "tasks": [tiny_digits_task(ratios=[5, 10])],
        "resources": {"max_concurrent_trials": 2, "trial_cpus": 0.5, "eval_cpus": 0.5}}


def sweep(spec_path, storage):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "mcu_ray.sweep", str(spec_path), "--storage", str(storage), "--no-report",
           "--num-cpus", "2"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: the Ray daemons it starts too


def test_sigkill_mid_grid_then_rerun(tmp_path):
    spec_path, storage = tmp_path / "kill.yaml", tmp_path / "store"
    spec_path.write_text(yaml.safe_dump(SPEC))
    driver = sweep(spec_path, storage)
    results = storage / "kill" / "results"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(results.rglob("*.parquet"))) < 2:
        time.sleep(0.5)
    assert driver.poll() is None, "the grid finished before it could be interrupted"
    os.kill(driver.pid, signal.SIGKILL)  # the driver dies mid-grid ...
    driver.wait()
    time.sleep(1)
    os.killpg(driver.pid, signal.SIGKILL)  # ... and the Ray processes it started go with it
    store = Store(str(storage))
    done_before = len(list(results.rglob("*.parquet")))
    finished = {k: n for k, n in collections.Counter(r["key"] for r in store.job_records()).items()
                if store.has_artifact(k)}
    assert 2 <= done_before < 8  # interrupted in the middle

    rerun = sweep(spec_path, storage)
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert f"{done_before} of 8 cells already have results" in out

    rows = read_table(store, "kill", "results").to_pylist()
    points = collections.Counter((r["cell_id"], r["curve"], r["t"]) for r in rows)
    assert len(points) == 8 * 2 * 4 and set(points.values()) == {1}  # none missing, none duplicated
    after = collections.Counter(r["key"] for r in store.job_records())
    assert all(after[k] == n for k, n in finished.items())  # no finished job ran again
    assert all(store.has_artifact(k) for k in after)


def test_two_sweeps_sharing_a_store_at_once(tmp_path):
    """Two drivers, each with its own Ray instance, one store: every artifact trained once."""
    storage = tmp_path / "store"
    paths = []
    for name in ("first", "second"):
        spec = {**SPEC, "name": name, "tasks": [tiny_digits_task(ratios=[5])]}
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(yaml.safe_dump(spec))
    drivers = [sweep(path, storage) for path in paths]
    outputs = [d.communicate(timeout=900)[0] for d in drivers]
    assert all(d.returncode == 0 for d in drivers), outputs
    store = Store(str(storage))
    runs = collections.Counter((r["key"], r["kind"]) for r in store.job_records())
    training = {k: n for k, n in runs.items() if k[1] != "evaluation"}
    assert training and set(training.values()) == {1}, training  # nothing trained twice
    for name in ("first", "second"):
        rows = read_table(store, name, "results").to_pylist()
        assert len(rows) == 4 * 2 * 4  # each sweep has all its rows
    assert not list((storage / "leases").glob("*.lease"))  # every lease released
