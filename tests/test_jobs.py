"""The artifact builders and their small rules: the t grid, a curve's keys, its bends packed in one
file, and ``build_original`` on a tiny digits task writing weights and a meta that says how they
were computed (no Ray: the builders are plain functions)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from mcu_ray import jobs, provenance
from mcu_ray.curves import load_state
from mcu_ray.placement import Placement
from mcu_ray.plan import item_as_dict, make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.store import Store
from mcu_ray.tasks import TASKS
from tests.helpers import tiny_digits_task

CPU = Placement("cpu")


@pytest.fixture(scope="module")
def plan():
    return make_plan(parse_spec({"name": "j", "settings": ["Rand"], "points": 5, "curves": ["linear", "bezier"],
                                 "tasks": [tiny_digits_task(methods=["ga"], hparams={"ga": {"epochs": 1}})]}))


def test_t_grid_is_equally_spaced_from_zero_to_one():
    assert jobs.t_grid(5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert jobs.t_grid(16)[1] == pytest.approx(1 / 15)


def test_interior_ts_leave_out_the_endpoints(plan):
    curve = next(c for c in plan.curves.values() if c.kind == "bezier")
    assert curve.points == 5
    assert jobs.interior_ts(curve) == [0.25, 0.5, 0.75]


def test_a_curves_bends_and_examples_live_under_keys_of_their_own(plan):
    curve = next(c for c in plan.curves.values() if c.kind == "bezier")
    digest = curve.key.removeprefix("curve-")
    assert jobs.bend_key(curve) == f"bend-{digest}"
    assert jobs.examples_key(curve) == f"examples-{digest}"
    assert jobs.blend(curve) == "bezier"
    assert jobs.blend(dataclasses.replace(curve, kind="polychain")) == "polychain"


def test_packed_bends_unpack_in_order():
    bends = [{"0.weight": torch.tensor([1.0]), "1/odd": torch.tensor([2.0])},
             {"0.weight": torch.tensor([3.0]), "1/odd": torch.tensor([4.0])}]
    packed = jobs.pack_bends(bends)
    assert sorted(packed) == ["0/0.weight", "0/1/odd", "1/0.weight", "1/1/odd"]  # a '/' in a name survives
    assert jobs.unpack_bends(packed, 2) == bends


def test_build_original_writes_weights_and_says_how_they_were_computed(tmp_path, plan):
    torch.set_num_threads(1)
    store = Store(str(tmp_path))
    original = next(iter(plan.originals.values()))
    meta = jobs.build_original(store, original, CPU)
    task = TASKS["digits"]
    opts = original.options
    train_rows = len(task.load(original.options, 1.0).split("train")["y"])
    assert (opts.epochs, opts.batch_size, opts.width) == (3, 64, 4)  # tiny_digits_task's, over the defaults
    assert store.read_meta(original.key) == meta
    assert meta["kind"] == "original" and meta["item"] == item_as_dict(original)
    assert meta["train_log"]["steps"] == opts.epochs * math.ceil(train_rows / opts.batch_size)
    assert math.isfinite(meta["train_log"]["final_loss"])
    assert (meta["device"], meta["precision"], meta["workers"], meta["grad_accum"], meta["effective_batch"]) == (
        "cpu", original.precision, 1, 1, opts.batch_size)
    assert meta["provenance"] == provenance.describe(CPU.device)  # this process's code, libraries, device
    assert [(r["key"], r["kind"]) for r in store.job_records()] == [(original.key, "original")]
    # the stored weights are the trained model: loaded into a fresh one, they are not its initial weights
    weights = store.load_weights(original.key)
    initial = task.new_model(original.options, seed=opts.model_seed).state_dict()
    assert set(weights) == set(initial)
    assert max((weights[n] - initial[n]).abs().max().item() for n in initial if initial[n].is_floating_point()) > 1e-3
    load_state(task.new_model(original.options, seed=0), weights)


def test_a_diverged_original_is_recorded_without_weights(tmp_path, plan):
    """A learning rate of 1e30 sends AdamW's weights to infinity: the loss is NaN, the artifact says so."""
    store = Store(str(tmp_path))
    original = next(iter(plan.originals.values()))
    exploding = dataclasses.replace(original, key="original-exploding", options=dataclasses.replace(original.options,
                                                                                            lr=1e30, epochs=1))
    meta = jobs.build_original(store, exploding, CPU)
    assert meta["status"] == "diverged" and meta["reason"].startswith("loss is nan at step ")
    assert meta["files"] == {}
    assert str(store.first_failed(exploding.key)).startswith("original-exploding diverged: loss is nan")


def test_the_grid_of_a_curve_is_what_its_points_are_evaluated_at(plan):
    curve = next(c for c in plan.curves.values() if c.kind == "linear")
    np.testing.assert_allclose([0.0, *jobs.interior_ts(curve), 1.0], np.linspace(0, 1, curve.points))
