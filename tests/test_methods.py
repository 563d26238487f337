"""The method registry (``mcu_ray.methods``): a method's knobs resolve method defaults < the task's
tuned defaults < the sweep file's values; and on digits every registered method under FO, FO+CL and
SO unlearns (forget accuracy below the original's) while retain accuracy stays within a margin, SO and
CL changing the result."""
from dataclasses import asdict

import pytest
import torch

from mcu_ray import jobs
from mcu_ray.methods import METHODS as REGISTRY
from mcu_ray.methods import resolve_hparams
from mcu_ray.errors import SpecError
from mcu_ray.tasks import TASKS
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec

RETAIN_MARGIN = 0.2  # allowed drop of retain accuracy below the original's
METHODS = ["ga", "rl", "gd", "npo", "bt", "su"]


def test_the_sweep_file_wins_over_the_tasks_defaults_which_win_over_the_methods():
    """digits tunes RL to epochs 10, lr 2e-3, batch 8, and Sophia's lr to 1e-2; RL's own defaults fill
    the rest (steps 0, weight decay 0); the file sets lr and Sophia's rho."""
    resolved = resolve_hparams("rl", TASKS["digits"], {"lr": 0.5, "so": {"rho": 0.1}}, "p")
    assert asdict(resolved.params) == {"epochs": 10, "steps": 0, "lr": 0.5, "batch_size": 8, "retain_batch_size": 32,
                                       "weight_decay": 0.0}
    assert (resolved.so.lr, resolved.so.rho, resolved.so.beta1) == (1e-2, 0.1, 0.9)
    assert asdict(resolved.cl) == {"kind": "superloss", "lam": 10.0}
    assert set(REGISTRY) >= {*METHODS, *(f"pathway_{m}" for m in METHODS)}


def test_a_bad_knob_names_its_path():
    with pytest.raises(SpecError) as err:
        resolve_hparams("ga", TASKS["digits"], {"cl": {"lam": -1.0}}, "tasks[0].hparams.ga")
    assert err.value.path == "tasks[0].hparams.ga.cl.lam"


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory):
    torch.set_num_threads(1)
    # FO-SO pairs (m, FO, s) with (m, SO, s); CL-Non-CL pairs (m, CL, s) with (m, FO, s)
    spec = parse_spec({"name": "m", "settings": ["FO-SO", "CL-Non-CL"], "tasks": [
        {"name": "digits", "ratios": [10], "methods": METHODS, "options": {"epochs": 15}}]})
    plan = make_plan(spec)
    store = jobs.Store(str(tmp_path_factory.mktemp("methods")))
    jobs.build_original(store, next(iter(plan.originals.values())))
    jobs.build_retrained(store, next(iter(plan.retrained.values())))
    for endpoint in plan.endpoints.values():
        jobs.build_endpoint(store, endpoint)
    original = jobs.original_metrics(store, next(iter(plan.originals.values())), next(iter(plan.retrained.values())))
    return plan, store, original


def by_variant(plan, method):
    found = {(e.optimizer, e.curriculum): e for e in plan.endpoints.values() if e.method == method}
    return found[("fo", "none")], found[("fo", "cl")], found[("so", "none")]


@pytest.mark.parametrize("method", METHODS)
def test_every_variant_unlearns_and_keeps_retain(endpoints, method):
    plan, store, original = endpoints
    for endpoint in by_variant(plan, method):
        metrics = store.read_meta(endpoint.key)["metrics"]
        label = f"{method} {endpoint.optimizer} {endpoint.curriculum}"
        assert metrics["acc_forget"] < original["acc_forget"], label
        assert metrics["acc_retain"] >= original["acc_retain"] - RETAIN_MARGIN, label


@pytest.mark.parametrize("method", METHODS)
def test_so_and_cl_differ_from_fo(endpoints, method):
    plan, store, _ = endpoints
    fo, cl, so = (store.load_weights(e.key) for e in by_variant(plan, method))
    for other in (cl, so):
        gap = max((other[n].float() - fo[n].float()).abs().max().item() for n in fo if fo[n].is_floating_point())
        assert gap > 1e-4, method
    assert by_variant(plan, method)[0].seed == by_variant(plan, method)[2].seed  # same seed, other optimiser
