"""Faults inside a running grid: a training process killed mid-job, a worker node lost.
Either way the trial is retried and the grid completes with every expected row.
And a corrupt artifact found by the holder of its claim: discarded, so that it is built again."""
import collections
import os
import signal
import threading
import time

import pytest
import ray
import torch

from mcu_ray.plan import make_plan
from mcu_ray.runner import run_grid, whole_or_discarded
from mcu_ray.spec import parse_spec
from mcu_ray.store import State, Store
from mcu_ray.tables import read_table
from tests.helpers import tiny_digits_task

pytestmark = pytest.mark.ray


def slow_spec(name: str, **resources):
    """Endpoints that train for seconds, so a fault lands while they run."""
    return parse_spec({"name": name, "settings": ["Rand"], "points": 3, "tasks": [tiny_digits_task(
        hparams={"ga": {"steps": 1500, "batch_size": 4}, "rl": {"epochs": 1}})],
        "resources": {"max_concurrent_trials": 2, "trial_cpus": 0.1, "eval_cpus": 0.5, "max_failures": 2,
                      **resources}})


def expected_points(plan, points=3):
    return {(c.key, kind, round(i / (points - 1), 6)) for c in plan.cells for kind, _ in c.curves
            for i in range(points)}


def assert_complete(store, sweep, plan):
    rows = read_table(store, sweep, "results").to_pylist()
    found = collections.Counter((r["cell_id"], r["curve"], r["t"]) for r in rows)
    assert set(found) == expected_points(plan) and set(found.values()) == {1}
    assert all(r["status"] == "ok" for r in rows)


def kill_first_job(store: Store, kind: str, killed: list, how) -> threading.Thread:
    """Watch the job ledger; when a job of ``kind`` starts, kill what runs it (once)."""
    def watch():
        deadline = time.time() + 240
        while time.time() < deadline and not killed:
            for record in store.job_records():
                if record["kind"] == kind and not store.has_artifact(record["key"]):
                    time.sleep(0.2)  # inside the job ...
                    if store.has_artifact(record["key"]):
                        continue  # ... unless it already finished: wait for the next one
                    killed.append(how(record))
                    return
            time.sleep(0.1)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_training_process_killed_mid_job_is_retried(ray_cluster, tmp_path):
    spec = slow_spec("workerkill")
    plan = make_plan(spec)
    storage = str(tmp_path / "store")
    store, killed = Store(storage), []

    def sigkill(record):
        os.kill(record["pid"], signal.SIGKILL)  # the trial process running the local-mode Train job
        return record["key"]

    watcher = kill_first_job(store, "endpoint", killed, sigkill)
    outcome = run_grid(spec, plan, storage)
    watcher.join(1)
    assert killed, "no endpoint job was caught running"
    assert outcome["cells_failed"] == 0 and outcome["cells_run"] == len(plan.cells)
    assert_complete(store, "workerkill", plan)
    runs = collections.Counter(r["key"] for r in store.job_records())
    assert runs[killed[0]] == 2  # the killed job ran again; finished ones did not
    assert all(n == 1 for k, n in runs.items() if k != killed[0])


def test_worker_node_lost_mid_grid(tmp_path):
    """A head and a worker node as separate Ray node processes on one machine, one storage folder."""
    from ray.cluster_utils import Cluster

    ray.shutdown()  # the shared local instance, if an earlier test started it
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        spec = slow_spec("nodekill")
        plan = make_plan(spec)
        storage = str(tmp_path / "store")
        store, killed = Store(storage), []
        worker_pids = {p.process.pid for procs in worker.all_processes.values() for p in procs}

        def remove_node(record):
            cluster.remove_node(worker, allow_graceful=False)  # the node and every process on it
            return record["key"]

        watcher = kill_first_job(store, "endpoint", killed, remove_node)
        outcome = run_grid(spec, plan, storage)
        watcher.join(1)
        assert killed and worker_pids
        assert outcome["cells_failed"] == 0
        assert_complete(store, "nodekill", plan)
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_corrupt_artifact_is_discarded_and_a_whole_one_kept(tmp_path, capsys):
    """The claim holder's check before building: a healthy or a diverged artifact is whole (kept, not
    rebuilt); a corrupt one (a byte flipped in its weights) is reported and every file of it deleted,
    meta.json first, so that the key reads missing and is built again; a missing one is to be built."""
    store = Store(str(tmp_path))
    store.save_artifact("ep-ok", {"kind": "endpoint"}, weights={"w": torch.ones(8)})
    store.save_artifact("ep-nan", {"kind": "endpoint", "status": "diverged", "reason": "loss is nan at step 2"})
    store.save_artifact("ep-bad", {"kind": "endpoint"}, weights={"w": torch.arange(8.0)})
    weights = tmp_path / "artifacts" / "ep-bad" / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 0xFF
    weights.write_bytes(bytes(blob))
    assert whole_or_discarded(store, "ep-ok") and whole_or_discarded(store, "ep-nan")
    assert sorted(p.name for p in (tmp_path / "artifacts" / "ep-ok").iterdir()) == ["meta.json", "weights.safetensors"]
    assert capsys.readouterr().out == ""
    assert not whole_or_discarded(store, "ep-bad")
    assert "[corrupt] artifact ep-bad" in capsys.readouterr().out
    assert list((tmp_path / "artifacts" / "ep-bad").iterdir()) == []
    assert store.status("ep-bad").state is State.MISSING
    assert not whole_or_discarded(store, "ep-missing") and store.status("ep-missing").state is State.MISSING
