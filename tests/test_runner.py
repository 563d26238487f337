"""The grid runner's rules that need no Ray cluster: how many trials run beside an evaluation task,
cells of several tasks taken in turn, the sweep's hash blind to tolerances and tracking, and a
corrupt artifact found and removed before it is rebuilt. (The grid itself: tests/test_grid.py,
tests/test_faults.py, tests/test_resume.py.)"""
import re
from types import SimpleNamespace

import torch

from mcu_ray import runner
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.store import Store
from tests.helpers import good, tiny_digits_task


def resources(trials: int, trial_cpus: float, eval_cpus: float):
    return SimpleNamespace(max_concurrent_trials=trials, trial_cpus=trial_cpus, eval_cpus=eval_cpus)


def test_trials_leave_room_for_one_evaluation_task(capsys):
    """8 CPUs, 1 per evaluation task, 2 per trial: floor((8 - 1) / 2) = 3 trials fit, not the 4 asked."""
    assert runner.concurrency(resources(4, 2.0, 1.0), 8) == 3
    assert "running 3 at a time instead of 4" in capsys.readouterr().out
    assert runner.concurrency(resources(2, 2.0, 1.0), 8) == 2  # fits: as asked, nothing said
    assert capsys.readouterr().out == ""
    assert runner.concurrency(resources(4, 4.0, 1.0), 2) == 1  # none fits: still one
    assert runner.concurrency(resources(4, 0.0, 1.0), 2) == 4  # no CPU per trial: no cap


def test_cells_of_several_tasks_are_taken_in_turn():
    cells = [SimpleNamespace(task=t, n=i) for i, t in enumerate(["a", "a", "a", "b", "c", "c"])]
    assert [(c.task, c.n) for c in runner.interleave_tasks(cells)] == [
        ("a", 0), ("b", 3), ("c", 4), ("a", 1), ("c", 5), ("a", 2)]
    assert runner.interleave_tasks([]) == []


def test_the_sweeps_hash_ignores_tolerances_and_tracking_only():
    base = runner.spec_hash(parse_spec(good()))
    assert runner.spec_hash(parse_spec({**good(), "tolerance": 0.5, "tracking": "tensorboard"})) == base
    assert runner.spec_hash(parse_spec({**good(), "points": 5})) != base
    assert re.fullmatch("[0-9a-f]{16}", base)


def test_a_corrupt_artifact_is_removed_and_reported_missing(tmp_path):
    store = Store(str(tmp_path))
    store.save_artifact("endpoint-a", {"kind": "endpoint"}, weights={"w": torch.ones(2)})
    store.save_artifact("endpoint-b", {"kind": "endpoint"}, weights={"w": torch.ones(2)})
    (tmp_path / "artifacts" / "endpoint-b" / "weights.safetensors").write_bytes(b"truncated")
    assert runner.whole_or_discarded(store, "endpoint-a")
    assert not runner.whole_or_discarded(store, "endpoint-b")
    assert not store.has_artifact("endpoint-b")
    assert not runner.whole_or_discarded(store, "endpoint-never-built")


def test_a_cells_trial_config_names_it():
    plan = make_plan(parse_spec({"name": "r", "settings": ["Met"], "tasks": [tiny_digits_task()]}))
    cell = plan.cells[0]
    config = runner.cell_config(cell, plan)
    pair = (plan.endpoints[cell.endpoint_1].method, plan.endpoints[cell.endpoint_2].method)
    assert config == {"key": cell.key, "task": "digits", "setting": "Met", "methods": "/".join(pair),
                      "ratio": 5.0, "seed": 0}
    assert pair in {("ga", "rl"), ("rl", "ga")}
