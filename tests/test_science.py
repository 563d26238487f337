"""The science without Ray: the digits task, GA and RL endpoints, a Bezier bend, evaluation."""
import dataclasses

import pytest
import torch

from mcu_ray import jobs
from mcu_ray.rows import curve_rows
from mcu_ray.curves import curve_length, point_on_curve
from mcu_ray.evaluate import evaluate_state
from mcu_ray.plan import make_plan
from mcu_ray.spec import CurveFitSpec, parse_spec
from mcu_ray.store import Store
from mcu_ray.tasks.classification import forget_indices, js_divergence, zrf_score
from tests.helpers import build_models, tiny_digits_task


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Original, retrained, GA/RL endpoints and one Bezier curve on digits at 10 %."""
    torch.set_num_threads(1)
    task = tiny_digits_task(ratios=[10], options={"epochs": 8, "width": 8},
                            hparams={"ga": {"epochs": 3, "lr": 3e-4}, "rl": {"epochs": 5, "lr": 3e-3}})
    spec = parse_spec({"name": "s", "settings": ["Met"], "points": 5, "tasks": [task]})
    plan = make_plan(spec)
    store = Store(str(tmp_path_factory.mktemp("store")))
    build_models(store, plan)
    return plan, store


def test_forget_sets_are_seeded_nested_and_disjoint():
    f2, r2 = forget_indices(1000, 2, split_seed=0)
    f10, r10 = forget_indices(1000, 10, split_seed=0)
    assert len(f2) == 20 and len(f10) == 100
    assert set(f2.tolist()) <= set(f10.tolist())
    assert set(f10.tolist()).isdisjoint(r10.tolist()) and len(f10) + len(r10) == 1000
    assert not torch.equal(forget_indices(1000, 2, split_seed=1)[0], f2)


def test_zrf_bounds():
    """ZRF is Chundawat et al.'s number (tests/tasks/test_zrf.py): 1 for the same predictions, below
    1 otherwise, finite even where a softmax underflowed to 0 (their code gives inf there)."""
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert zrf_score(p, p) == pytest.approx(1.0)
    assert zrf_score(torch.tensor([[0.9, 0.1]]), torch.tensor([[0.1, 0.9]])) < 1.0
    far = js_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(far) and float(far) > 1.0


def test_original_fits_and_endpoints_forget(built):
    plan, store = built
    original = next(iter(plan.originals.values()))
    before = jobs.original_metrics(store, original, next(iter(plan.retrained.values())))
    assert before["acc_test"] > 0.85 and before["acc_forget"] > 0.9
    for endpoint in plan.endpoints.values():
        after = store.read_meta(endpoint.key)["metrics"]
        assert after["acc_forget"] < before["acc_forget"], endpoint.method
        assert after["loss_forget"] > before["loss_forget"], endpoint.method
        assert set(after) == {"acc_test", "acc_retain", "acc_forget", "zrf", "loss_retain", "loss_forget",
                              "mia_efficacy", "mia_loss"}
    retrained = store.read_meta(next(iter(plan.retrained)))["metrics"]
    assert retrained["acc_retain"] > 0.85


def test_bezier_bend_trains_and_curve_points_are_evaluated(built):
    plan, store = built
    curve = next(c for c in plan.curves.values() if c.trained)
    meta = jobs.build_bend(store, curve)
    assert meta["train_log"]["steps"] > 0
    bend, = jobs.unpack_bends(store.load_weights(jobs.bend_key(curve)), 1)
    ends = [store.load_weights(curve.endpoint_1), store.load_weights(curve.endpoint_2)]
    chord_mid = {n: (ends[0][n] + ends[1][n]) / 2 for n in bend}
    assert any(not torch.allclose(bend[n], chord_mid[n]) for n in bend)  # it moved off the chord
    rows = jobs.evaluate_curve_serially(store, curve)
    assert [r["t"] for r in rows] == pytest.approx([0.25, 0.5, 0.75])
    cps = jobs.control_points(store, curve)
    jobs.save_points(store, curve, rows, curve_length(cps))
    # the quadratic curve is at least as long as its chord ||theta_2 - theta_1||
    chord = float(torch.sqrt(sum(((ends[1][n] - ends[0][n]).double() ** 2).sum() for n in bend)))
    assert store.read_meta(curve.key)["length"] >= chord * (1 - 1e-6)
    full = curve_rows(store, curve, curve.endpoint_1)
    assert [r["t"] for r in full] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert full[0]["acc_forget"] == store.read_meta(curve.endpoint_1)["metrics"]["acc_forget"]
    flipped = curve_rows(store, curve, curve.endpoint_2)
    assert flipped[0]["acc_forget"] == full[-1]["acc_forget"]
    assert [r["t"] for r in flipped] == pytest.approx([0, 0.25, 0.5, 0.75, 1])


def test_t_zero_of_a_curve_matches_the_endpoint(built):
    plan, store = built
    curve = next(c for c in plan.curves.values() if not c.trained)
    cps = jobs.control_points(store, curve)
    at_zero = jobs.evaluate_curve_serially(store, curve, [0.0], cps=cps)[0]
    stored = store.read_meta(curve.endpoint_1)["metrics"]
    for name, value in stored.items():
        assert at_zero[name] == pytest.approx(value, abs=1e-5)


def test_two_bends_for_a_cubic_bezier_and_a_polygonal_chain(built, tmp_path):
    """`bends: 2`: both curve kinds train two control points from the same endpoints; their points
    are evaluated with their own blending (a chain's t=0.5 is halfway between its two bends)."""
    plan, store = built
    base = next(c for c in plan.curves.values() if c.trained)
    for kind in ("bezier", "polychain"):
        curve = dataclasses.replace(base, key=f"curve-{kind}2", kind=kind, bends=2)
        meta = jobs.build_bend(store, curve)
        assert meta["train_log"]["steps"] > 0
        cps = jobs.control_points(store, curve)
        assert len(cps) == 4
        chord = {n: (2 * cps[0][n] + cps[3][n]) / 3 for n in cps[1]}
        assert any(not torch.allclose(cps[1][n], chord[n]) for n in chord)  # the first bend left the chord
        rows = jobs.evaluate_curve_serially(store, curve, ts=[0.5])
        mid = point_on_curve(cps, 0.5, kind)
        if kind == "polychain":
            assert all(torch.allclose(mid[n], (cps[1][n] + cps[2][n]) / 2) for n in mid)
        state = {**store.load_weights(curve.endpoint_1), **mid}
        by_hand = evaluate_state(curve.task, curve.options, curve.ratio, state, (store.uri, curve.retrained),
                                 jobs.placed(None, curve))
        assert rows[0]["acc_test"] == pytest.approx(by_hand["acc_test"])


def test_a_bend_trains_with_its_first_endpoints_own_budget(built):
    """MU-Bench trainer/base.py: the curve reuses the unlearning run's settings; with no `curve_fit`
    the bend takes exactly as many steps as the first endpoint did, on the same batches."""
    plan, store = built
    base = next(c for c in plan.curves.values() if c.trained)
    curve = dataclasses.replace(base, key="curve-own-budget", fit=CurveFitSpec())
    meta = jobs.build_bend(store, curve)
    endpoint = store.read_meta(curve.endpoint_1)
    assert meta["train_log"]["steps"] == endpoint["train_log"]["steps"] > 0
    assert meta["effective_batch"] == endpoint["effective_batch"]
