"""The science without Ray: the digits task, GA and RL endpoints, a Bezier bend, evaluation."""
import pytest
import torch

from mcu_ray import jobs
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.store import Store
from mcu_ray.tasks.classification import forget_indices, js_divergence, zrf_score
from tests.conftest import tiny_digits_task


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Original, retrained, GA/RL endpoints and one Bezier curve on digits at 10 %."""
    torch.set_num_threads(1)
    task = tiny_digits_task(ratios=[10], options={"epochs": 8, "width": 8},
                            hparams={"ga": {"epochs": 3, "lr": 3e-4}, "rl": {"epochs": 5, "lr": 3e-3}})
    spec = parse_spec({"name": "s", "settings": ["Met"], "points": 5, "tasks": [task]})
    plan = make_plan(spec)
    store = Store(str(tmp_path_factory.mktemp("store")))
    for item in plan.originals.values():
        jobs.build_original(store, item)
    for item in plan.retrained.values():
        jobs.build_retrained(store, item)
    for item in plan.endpoints.values():
        jobs.build_endpoint(store, item)
    return plan, store


def test_forget_sets_are_seeded_nested_and_disjoint():
    f2, r2 = forget_indices(1000, 2, split_seed=0)
    f10, r10 = forget_indices(1000, 10, split_seed=0)
    assert len(f2) == 20 and len(f10) == 100
    assert set(f2.tolist()) <= set(f10.tolist())
    assert set(f10.tolist()).isdisjoint(r10.tolist()) and len(f10) + len(r10) == 1000
    assert not torch.equal(forget_indices(1000, 2, split_seed=1)[0], f2)


def test_zrf_bounds():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert zrf_score(p, p) == pytest.approx(1.0)
    far = js_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
    assert float(far) == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-4)


def test_original_fits_and_endpoints_forget(built):
    plan, store = built
    original = next(iter(plan.originals.values()))
    before = jobs.original_metrics(store, original, next(iter(plan.retrained.values())))
    assert before["acc_test"] > 0.85 and before["acc_forget"] > 0.9
    for endpoint in plan.endpoints.values():
        after = store.read_meta(endpoint.key)["metrics"]
        assert after["acc_forget"] < before["acc_forget"], endpoint.method
        assert after["loss_forget"] > before["loss_forget"], endpoint.method
        assert set(after) == {"acc_test", "acc_retain", "acc_forget", "zrf", "loss_retain", "loss_forget"}
    retrained = store.read_meta(next(iter(plan.retrained)))["metrics"]
    assert retrained["acc_retain"] > 0.85


def test_bezier_bend_trains_and_curve_points_are_evaluated(built):
    plan, store = built
    curve = next(c for c in plan.curves.values() if c.trained)
    meta = jobs.build_bend(store, curve)
    assert meta["train_log"]["steps"] > 0
    bend = store.load_weights(jobs.bend_key(curve))
    ends = [store.load_weights(curve.endpoint_1), store.load_weights(curve.endpoint_2)]
    chord_mid = {n: (ends[0][n] + ends[1][n]) / 2 for n in bend}
    assert any(not torch.allclose(bend[n], chord_mid[n]) for n in bend)  # it moved off the chord
    rows = jobs.evaluate_curve_serially(store, curve)
    assert [r["t"] for r in rows] == pytest.approx([0.25, 0.5, 0.75])
    jobs.save_points(store, curve, rows)
    full = jobs.curve_rows(store, curve, curve.endpoint_1)
    assert [r["t"] for r in full] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert full[0]["acc_forget"] == store.read_meta(curve.endpoint_1)["metrics"]["acc_forget"]
    flipped = jobs.curve_rows(store, curve, curve.endpoint_2)
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
