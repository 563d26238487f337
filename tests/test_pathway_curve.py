"""Pathway unlearning: its decisions on hand-made numbers (tensor mask, beta rule, t*), the
masked midpoint training, the export of phi(t*) as an endpoint, and its place in plan and spec."""
import dataclasses
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from mcu_ray.placement import Placement

from mcu_ray import jobs
from mcu_ray.errors import SpecError
from mcu_ray.rows import pathway_rows
from mcu_ray.curves import load_state
from mcu_ray.evaluate import evaluate_state, task_data
from mcu_ray.methods import METHODS
from mcu_ray.pathway_curve import (BetaRule, bend_optimizer, fit_pathway_bend, select_t, select_tensors,
                                   tensor_scores)
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.store import ArtifactStatus, State, Store
from mcu_ray.tasks import TASKS
from mcu_ray.tasks.classification import forget_indices_from_file, validation_indices_from_file
from mcu_ray.tasks.tofu import TASK as TOFU
from mcu_ray.train import train_supervised, unlearn
from tests.helpers import tiny_digits_task

# a hand-made model: four tensors, 100 parameters in all
SIZES = {"embed": 40, "attn": 30, "mlp": 20, "head": 10}
RETAIN = {"embed": 0.9, "attn": 0.1, "mlp": 0.5, "head": 0.2}
FORGET = {"embed": 5.0, "attn": 0.3, "mlp": 0.7, "head": 0.9}


def test_mask_drops_retain_critical_tensors_then_takes_forget_salient_ones():
    # k_r = 0.3: drop by retain score -> embed (40 >= 30 excluded); k = 0.3: by forget score among
    # the rest -> head (10), mlp (30 in total: enough)
    assert select_tensors(RETAIN, FORGET, SIZES, k=0.3, k_r=0.3) == ["head", "mlp"]
    # k_r = 0.5: embed (40) is not enough, mlp (60) too; the rest by forget score
    assert select_tensors(RETAIN, FORGET, SIZES, k=0.1, k_r=0.5) == ["head"]
    # no exclusion: the most forget-salient tensor first
    assert select_tensors(RETAIN, FORGET, SIZES, k=0.4, k_r=0.0) == ["embed"]
    assert select_tensors(RETAIN, FORGET, SIZES, k=1.0, k_r=0.0) == ["embed", "head", "mlp", "attn"]
    assert select_tensors(RETAIN, FORGET, SIZES, k=0.0, k_r=0.0) == []


def reference_beta(forget_acc, retain_acc, forget_base, retrain_base):
    """The reference's adaptive beta, as written in TIML-Group/Mode-Connectivity-Unlearning
    (ff1f215) unlearn.py:102-107."""
    if forget_acc <= forget_base:
        beta = 0
    elif forget_acc > forget_base and (forget_acc-forget_base)/forget_base < (retain_acc-retrain_base)/retrain_base:
        beta = 0.01
    else:
        beta = 0.5
    return beta


# (forget_acc, retain_acc, forget_baseline, retain_baseline), in percent as the reference's accuracy()
BETA_CASES = [
    (80.0, 99.0, 85.0, 95.0),  # forget accuracy below its baseline: 0
    (85.0, 99.0, 85.0, 95.0),  # ... at it: 0
    (86.0, 99.0, 85.0, 95.0),  # forget excess 1.2 % < retain surplus 4.2 %: gentle
    (90.0, 96.0, 85.0, 95.0),  # forget excess 5.9 % > retain surplus 1.1 %: hard
    (90.0, 90.0, 85.0, 100.0),  # retain *below* its baseline (deficit 10 % > excess 5.9 %): hard (a deficit
                                # read as a positive gap would give 0.01 here)
    (86.0, 95.0, 85.0, 95.0),  # retain exactly at its baseline: hard
    (100.0, 100.0, 85.0, 90.0),  # forget excess 17.6 % > retain surplus 11.1 %: hard
    (85.5, 100.0, 85.0, 90.0),  # forget excess 0.6 % < retain surplus 11.1 %: gentle
]


@pytest.mark.parametrize("case", BETA_CASES)
def test_beta_rule_is_the_references(case):
    expected = reference_beta(*case)
    assert BetaRule()(*case) == expected
    fractions = [v / 100 for v in case]  # mcu_ray's accuracies are fractions: the ratios are unitless
    assert BetaRule()(*fractions) == expected
    # the non-zero values are knobs; the branch is the reference's
    assert BetaRule(low=0.1, high=2.0)(*case) == {0: 0.0, 0.01: 0.1, 0.5: 2.0}[expected]


def test_beta_cases_cover_every_branch():
    assert {reference_beta(*case) for case in BETA_CASES} == {0, 0.01, 0.5}


def reference_find_optimal_t(t, retain_acc_list, forget_acc_list, retain_base, forget_base, lower=0.75):
    """The reference's utils.find_optimal_t (utils.py:175-195) as written, the dense grid's lower end
    made a parameter (0.75 there: 26 points, step 0.01); returns (t, gap) instead of the index."""
    from scipy.interpolate import interp1d

    t_dense = np.linspace(lower, 1.0, int(round((1.0 - lower) * 100)) + 1)
    interpolator = interp1d(t, retain_acc_list, kind='cubic')
    retain_acc_dense = interpolator(t_dense)
    interpolator = interp1d(t, forget_acc_list, kind='cubic')
    forget_acc_dense = interpolator(t_dense)

    retain_gap_ = retain_acc_dense-[retain_base]*len(t_dense)
    forget_gap_ = forget_acc_dense-[forget_base]*len(t_dense)
    avg_gap_dense = (abs(retain_gap_)+abs(forget_gap_))/2
    optimal_t = np.argmin(avg_gap_dense)
    return t_dense[optimal_t], avg_gap_dense[optimal_t]


def choose(ts, forget, retain, targets, **kw):
    return select_t(ts, {"forget": forget, "retain": retain}, targets, **kw)


@pytest.mark.parametrize("seed", range(6))
def test_t_star_is_the_references_find_optimal_t(seed):
    rng = np.random.default_rng(seed)
    ts = np.linspace(0, 1, 20)  # eval_curve.py's grid: --num_points 20 over [0, 1]
    # accuracies falling along the curve with a bump, as a curve from the original to an unlearned model does
    forget = 1.0 - rng.uniform(0.2, 0.6) * ts ** rng.uniform(1, 3) + 0.03 * np.sin(rng.uniform(3, 9) * ts)
    retain = 1.0 - rng.uniform(0.0, 0.1) * ts ** 2 - 0.05 * np.sin(np.pi * ts) * rng.uniform(0, 1)
    targets = {"forget": rng.uniform(0.6, 0.9), "retain": rng.uniform(0.9, 1.0)}
    expected_t, expected_gap = reference_find_optimal_t(ts, retain, forget, targets["retain"], targets["forget"])
    t, gap = choose(ts, forget, retain, targets)
    assert t == pytest.approx(expected_t, abs=1e-9) and gap == pytest.approx(expected_gap, abs=1e-9)
    # the lower end of the search is a knob
    expected_t, expected_gap = reference_find_optimal_t(ts, retain, forget, targets["retain"], targets["forget"], 0.5)
    t, gap = choose(ts, forget, retain, targets, search_from=0.5)
    assert t == pytest.approx(expected_t, abs=1e-9) and gap == pytest.approx(expected_gap, abs=1e-9)


def test_t_star_searches_only_from_three_quarters_and_takes_the_first_of_ties():
    ts = np.linspace(0, 1, 20)
    # the targets are met exactly at t = 0.4, outside the search: the best of [0.75, 1] is its lower end
    t, gap = choose(ts, 1 - ts, np.full(20, 0.9), {"forget": 0.6, "retain": 0.9})
    expected_t, expected_gap = reference_find_optimal_t(ts, np.full(20, 0.9), 1 - ts, 0.9, 0.6)
    assert t == expected_t == pytest.approx(0.75) and gap == pytest.approx(expected_gap)
    # flat accuracies: every t ties, np.argmin's first, i.e. the smallest t, wins
    t, _ = choose(ts, np.full(20, 0.7), np.full(20, 0.9), {"forget": 0.6, "retain": 1.0})
    assert t == pytest.approx(0.75)
    # a minimum between grid points is found on the dense grid (step 0.01)
    t, _ = choose(ts, 1 - (ts - 0.87) ** 2, np.full(20, 0.9), {"forget": 1.0, "retain": 0.9})
    assert t == pytest.approx(0.87, abs=1e-9)
    # a NaN point (a diverged evaluation) is left out of the interpolation, not propagated
    forget = np.where(np.isclose(ts, ts[17]), np.nan, 1 - ts)
    t, gap = choose(ts, forget, np.full(20, 0.9), {"forget": 0.1, "retain": 0.9})
    assert t == pytest.approx(0.9) and gap == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="NaN"):
        choose(ts, np.full(20, np.nan), np.full(20, 0.9), {"forget": 0.1, "retain": 0.9})


def test_defaults_are_the_references():
    """The README command for CIFAR-10 and the scripts' constants (research notes, section 6)."""
    params = METHODS["pathway_ga"].Params()
    assert (params.k, params.retain_ratio, params.batch_size, params.epochs, params.weight_decay) == (
        0.5, 0.5, 128, 10, 0.0)
    assert (params.optimizer, params.lr, params.momentum) == ("sgd", 0.01, 0.9)
    assert (params.beta_low, params.beta_high, params.select_points, params.search_from) == (0.01, 0.5, 20, 0.75)
    assert jobs.t_grid(params.select_points) == pytest.approx(np.linspace(0, 1, 20))  # eval_curve.py:71-72
    bend = [torch.zeros(3, requires_grad=True)]
    sgd = bend_optimizer(bend, params)
    assert isinstance(sgd, torch.optim.SGD)
    assert (sgd.defaults["lr"], sgd.defaults["momentum"], sgd.defaults["weight_decay"]) == (0.01, 0.9, 0.0)
    assert isinstance(bend_optimizer(bend, METHODS["pathway_ga"].Params(optimizer="adamw")), torch.optim.AdamW)
    # TOFU's language models: AdamW at the task's small lr
    tofu = parse_spec({"name": "p", "tasks": [{"name": "tofu", "ratios": [10], "methods": ["gd", "pathway_gd"]}]})
    knobs = tofu.tasks[0].hparams["pathway_gd"].params
    assert knobs.optimizer == "adamw" and knobs.lr <= 1e-3 and knobs.k == 0.5


# ----------------------------------------------------------------------------- the loop and the export

class SquaredError:
    """A hand-made regression 'task': per-example squared error, accuracy = |error| < 0.5."""

    @staticmethod
    def example_losses(forward, batch, reduction="mean"):
        return ((forward(batch["x"]) - batch["y"]) ** 2).sum(-1)


def test_tensor_scores_are_gradient_norms_per_parameter():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    batch = {"x": torch.randn(10, 3), "y": torch.randn(10, 2)}
    scores = tensor_scores(model, SquaredError, batch, Placement("cpu"), batch_size=4)  # three minibatches, accumulated
    ((model(batch["x"]) - batch["y"]) ** 2).sum().backward()
    for name, p in model.named_parameters():
        assert scores[name] == pytest.approx(float(p.grad.norm() / p.numel()), rel=1e-5)
    assert set(scores) == {"0.weight", "0.bias", "1.weight", "1.bias"}


@pytest.fixture(scope="module")
def digits_models():
    """A small digits original and a GA endpoint of it, at 10 %."""
    torch.set_num_threads(1)
    spec = parse_spec({"name": "p", "settings": ["Rand"], "tasks": [
        tiny_digits_task(ratios=[10], methods=["ga", "pathway_ga"], options={"epochs": 5, "width": 4},
                         hparams={"ga": {"steps": 20, "lr": 1e-3}, "pathway_ga": {"epochs": 2, "select_points": 5}})]})
    plan = make_plan(spec)
    return plan, spec.tasks[0]


def test_only_the_selected_tensors_of_the_midpoint_move(digits_models):
    plan, _ = digits_models
    ep = next(e for e in plan.endpoints.values() if e.method == "ga")
    options = ep.options
    task, data = task_data(ep.task, options, ep.ratio)
    model = task.new_model(options, seed=0)
    train_supervised(model, task, data.split("train"), epochs=3, lr=3e-3, batch_size=64, weight_decay=0, seed=0)
    original = {n: p.detach().clone() for n, p in model.named_parameters()}
    unlearned = task.new_model(options, seed=0)
    load_state(unlearned, model.state_dict())
    unlearn(unlearned, task, data, "ga", METHODS["ga"].Params(steps=20, lr=1e-3), seed=0)
    theta_u = {n: p.detach().clone() for n, p in unlearned.named_parameters()}

    params = METHODS["pathway_ga"].Params(epochs=2, k=0.05, k_r=0.1)
    with pytest.raises(ValueError, match="build_pathway"):  # not an ordinary unlearning loss
        unlearn(task.new_model(options, seed=0), task, data, "pathway_ga", params, seed=0)
    # the targets, by hand: the original's accuracy on the validation rows (never trained on) and on Dr
    with torch.no_grad():
        model.eval()
        held_out, retain = data.split("validation"), data.split("retain")
        forget_target = float((model(held_out["x"]).argmax(-1) == held_out["y"]).float().mean())
        retain_target = float((model(retain["x"]).argmax(-1) == retain["y"]).float().mean())
    bend, log = fit_pathway_bend(model, theta_u, task, data, params, seed=0)
    selected = set(log["selected_tensors"])
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    assert selected and sum(sizes[n] for n in selected) >= 0.05 * sum(sizes.values())
    for name in sizes:
        chord = (original[name] + theta_u[name]) / 2
        if name in selected:
            assert not torch.equal(bend[name], chord), name
        else:
            assert torch.equal(bend[name], chord), name  # never trained: no gradient was computed
    for name, p in model.named_parameters():  # the original itself is untouched
        assert torch.equal(p, original[name])
    # an epoch is one pass over Df in the forget part of 128-example batches mixing Df and half of Dr in proportion
    n_forget, n_subset = len(data.split("forget")["y"]), max(1, round(0.5 * len(retain["y"])))
    forget_per_batch = max(1, round(128 * n_forget / (n_forget + n_subset)))
    assert log["steps"] == 2 * math.ceil(n_forget / forget_per_batch)
    # every step's beta is 0, beta_low (0.01) or beta_high (0.5): the mean lies between those of the non-zero steps
    pushed = 1 - log["beta_zero_fraction"]
    assert 0.01 * pushed - 1e-12 <= log["mean_beta"] <= 0.5 * pushed + 1e-12
    assert log["forget_baseline"] == pytest.approx(forget_target, abs=1e-6)
    assert log["retain_baseline"] == pytest.approx(retain_target, abs=1e-6)


def test_pathway_endpoint_is_exported_as_an_ordinary_endpoint(digits_models, tmp_path, monkeypatch):
    plan, _ = digits_models
    store = Store(str(tmp_path))
    for item in plan.originals.values():
        jobs.build_original(store, item)
    for item in plan.retrained.values():
        jobs.build_retrained(store, item)
    pathway_ep = next(e for e in plan.endpoints.values() if e.source and e.seed == 0)
    jobs.build_endpoint(store, plan.endpoints[pathway_ep.source])
    read = []  # every artifact whose metadata the build reads
    store_read_meta = store.read_meta
    monkeypatch.setattr(store, "read_meta", lambda key: read.append(key) or store_read_meta(key))
    meta = jobs.build_endpoint(store, pathway_ep)
    monkeypatch.undo()
    assert pathway_ep.retrained not in read  # the retrained model's metrics play no part in the choice

    chosen = meta["pathway"]
    points = store.load_points(pathway_ep.key).to_pylist()
    assert [p["t"] for p in points] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert chosen["selection"]["t"] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    # the targets are the bend's beta baselines: the original's accuracy on validation rows and on Dr
    assert chosen["targets"] == {"forget": meta["train_log"]["forget_baseline"],
                                 "retain": meta["train_log"]["retain_baseline"]}
    # on the classifier the accuracies t* is chosen on are the evaluated acc_forget / acc_retain
    assert chosen["selection"]["forget"] == pytest.approx([p["acc_forget"] for p in points], abs=1e-6)
    assert chosen["selection"]["retain"] == pytest.approx([p["acc_retain"] for p in points], abs=1e-6)
    # t* is the reference's find_optimal_t over the evaluated points
    expected_t, expected_gap = reference_find_optimal_t(
        chosen["selection"]["t"], chosen["selection"]["retain"], chosen["selection"]["forget"],
        chosen["targets"]["retain"], chosen["targets"]["forget"])
    assert chosen["t_interpolated"] == pytest.approx(expected_t)
    assert chosen["predicted_gap"] == pytest.approx(expected_gap)
    # phi(t*) is re-evaluated; kept unless an evaluated point of [0.75, 1] is closer to the targets
    window = [(t, (abs(f - chosen["targets"]["forget"]) + abs(r - chosen["targets"]["retain"])) / 2)
              for t, f, r in zip(*(chosen["selection"][k] for k in ("t", "forget", "retain"))) if t >= 0.75]
    assert chosen["selection_gap"] <= min(g for _, g in window) + 1e-9
    assert chosen["t_star"] == chosen["t_interpolated"] or chosen["t_star"] in [t for t, _ in window]
    assert chosen["selection_gap"] == pytest.approx((abs(meta["metrics"]["acc_forget"] - chosen["targets"]["forget"])
                                                     + abs(meta["metrics"]["acc_retain"] - chosen["targets"]["retain"]))
                                                    / 2, abs=1e-6)
    # safetensors weights that load into a fresh model and give the stored metrics: phi(t*) itself
    again = evaluate_state(pathway_ep.task, pathway_ep.options, pathway_ep.ratio, store.load_weights(pathway_ep.key),
                           (store.uri, pathway_ep.retrained), Placement("cpu"))
    assert again == pytest.approx(meta["metrics"], abs=1e-6)
    assert store.status(pathway_ep.key).state is State.HEALTHY and meta["kind"] == "endpoint"
    rows = pathway_rows(store, pathway_ep, "ga")
    assert [r["model"] for r in rows[:4]] == ["original", "source", "pathway", "retrained"] and len(rows) == 4 + 5
    # the report's gap to the retrained model, out of sample, on acc_forget / acc_retain / acc_test
    retrained = store.read_meta(pathway_ep.retrained)["metrics"]
    assert rows[2]["gap_to_retrained"] == pytest.approx(
        np.mean([abs(meta["metrics"][m] - retrained[m]) for m in ("acc_forget", "acc_retain", "acc_test")]))
    assert rows[3]["gap_to_retrained"] == 0
    assert rows[2]["selection_gap"] == pytest.approx(chosen["selection_gap"])
    assert rows[0]["acc_forget"] == points[0]["acc_forget"]  # the original is the curve at t=0


def test_a_failed_source_fails_its_pathway_endpoint(digits_models, tmp_path):
    plan, _ = digits_models
    store = Store(str(tmp_path))
    pathway_ep = next(e for e in plan.endpoints.values() if e.source)
    store.save_artifact(pathway_ep.source, {"status": "diverged", "reason": "loss is nan at step 3"})
    meta = jobs.build_endpoint(store, pathway_ep)
    assert meta["status"] == "diverged"
    assert meta["reason"] == f"source endpoint {pathway_ep.source} diverged: loss is nan at step 3"
    assert store.status(pathway_ep.key) == ArtifactStatus(pathway_ep.key, State.DIVERGED, meta["reason"])
    assert [r["key"] for r in store.job_records()] == [pathway_ep.key]  # recorded, though nothing trained


# ----------------------------------------------------------------------------- the validation split

def test_validation_rows_are_held_out_of_d_and_of_every_forget_set():
    task = TASKS["digits"]
    options = parse_spec({"name": "p", "tasks": [tiny_digits_task()]}).tasks[0].options
    assert options.val_fraction == 0.1
    n = len(task.load_arrays(options)[0]["y"])  # 1437 training rows
    n_val = round(0.1 * n)
    # the tail of the seeded permutation whose head the forget sets are cut from
    tail = torch.randperm(n, generator=torch.Generator().manual_seed(10_000 + options.split_seed))[n - n_val:]
    seen = None
    for ratio in (1, 2, 5, 10, 50):
        data = task.load(options, ratio)
        validation = set(data.validation_idx.tolist())
        assert validation == set(tail.tolist()) and len(validation) == n_val
        assert seen is None or validation == seen  # the same rows at every ratio
        seen = validation
        forget, retain = set(data.forget_idx.tolist()), set(data.retain_idx.tolist())
        assert not validation & forget and not validation & retain and not forget & retain
        assert len(forget | retain | validation) == n
        assert len(forget) == round((n - n_val) * ratio / 100)  # r % of D
        # D, what the original trains on, is forget + retain: no validation row
        assert torch.equal(data.split("train")["y"], data.train["y"][sorted(forget | retain)])
        assert torch.equal(data.split("validation")["x"], data.train["x"][sorted(validation)])
    # without a validation split, D is every training row
    data = task.load(dataclasses.replace(options, val_fraction=0.0), 10)
    assert len(data.validation_idx) == 0 and data.split("train") is data.train
    with pytest.raises(SpecError, match="val_fraction"):
        parse_spec({"name": "p", "tasks": [tiny_digits_task(options={"val_fraction": 0.6})]})


def test_validation_rows_with_a_mubench_list_are_outside_the_list(tmp_path):
    n, listed = 200, [int(i) for i in torch.randperm(200, generator=torch.Generator().manual_seed(1))[:20]]
    path = tmp_path / "df.txt"
    path.write_text("\n".join(map(str, listed)))
    validation = validation_indices_from_file(str(path), n, 30, split_seed=0)
    assert len(validation) == 30 and not set(validation.tolist()) & set(listed)
    assert torch.equal(validation, validation_indices_from_file(str(path), n, 30, split_seed=0))  # seeded
    for ratio in (2, 10):
        forget, retain = forget_indices_from_file(str(path), n, ratio, validation)
        assert set(forget.tolist()) <= set(listed)
        assert not set(retain.tolist()) & set(validation.tolist()) and not set(retain.tolist()) & set(forget.tolist())
        assert len(forget) + len(retain) + len(validation) == n
    assert all(TASKS[name].Options().val_fraction == 0.1 for name in ("cifar10", "ddi", "nlvr2"))


def test_validation_split_names_held_out_data_of_each_task():
    assert TASKS["digits"].validation_split == "validation"
    assert TOFU.validation_split == "holdout"  # TOFU's held-out authors: never in D, not scored by the report


def test_pathway_needs_a_validation_split():
    task = TASKS["digits"]
    options = parse_spec({"name": "p", "tasks": [tiny_digits_task(options={"val_fraction": 0.0})]}).tasks[0].options
    data = task.load(options, 10)
    model = task.new_model(options, seed=0)
    with pytest.raises(ValueError, match="val_fraction"):
        fit_pathway_bend(model, dict(model.named_parameters()), task, data, METHODS["pathway_ga"].Params(), seed=0)


# ----------------------------------------------------------------------------- plan and spec

def test_plan_builds_each_pathway_endpoint_from_its_sources_variant():
    spec = parse_spec({"name": "p", "settings": ["Rand", "FO-SO", "Met"], "tasks": [
        tiny_digits_task(methods=["ga", "rl", "pathway_ga"])]})
    plan = make_plan(spec)
    without = make_plan(parse_spec({"name": "p", "settings": ["Rand", "FO-SO", "Met"], "tasks": [
        tiny_digits_task(methods=["ga", "rl"])]}))
    assert set(without.endpoints) <= set(plan.endpoints)  # other endpoints keep their keys
    pathways = [e for e in plan.endpoints.values() if e.source]
    assert {(e.optimizer, e.seed) for e in pathways} == {("fo", 0), ("fo", 1), ("so", 0)}
    for e in pathways:
        source = plan.endpoints[e.source]
        assert (source.method, source.optimizer, source.curriculum, source.seed, source.ratio) == \
               ("ga", e.optimizer, e.curriculum, e.seed, e.ratio)
    # a Bezier bend whose first endpoint is a pathway model trains with its source's objective
    cell = next(c for c in plan.cells if plan.endpoints[c.endpoint_1].method == "pathway_ga" and c.setting == "Met")
    bezier = plan.curves[dict(cell.curves)["bezier"]]
    assert bezier.objective == "ga" and bezier.hparams == spec.tasks[0].hparams["ga"].params
    counts = plan.counts()  # each pathway endpoint evaluates select_points t values and then t*
    assert counts["evaluations"] == (2 * counts["retrained"] + counts["endpoints"] + counts["curves"] * 14
                                     + len(pathways) * spec.tasks[0].hparams["pathway_ga"].params.select_points)


def test_spec_checks_pathway_knobs():
    def parse(methods, hparams):
        return parse_spec({"name": "p", "tasks": [tiny_digits_task(methods=methods, hparams=hparams)]})

    # the source's knobs may be set without listing the source itself
    spec = parse(["rl", "pathway_ga"], {"ga": {"lr": 0.5}, "pathway_ga": {"k": 0.2}})
    assert spec.tasks[0].hparams["ga"].params.lr == 0.5
    assert spec.tasks[0].hparams["pathway_ga"].params.k == 0.2
    for hparams, field_path in (({"pathway_ga": {"k": 1.5}}, "pathway_ga.k"),
                                ({"pathway_ga": {"k": 0.8, "k_r": 0.3}}, "pathway_ga.k"),
                                ({"pathway_ga": {"retain_ratio": 0}}, "pathway_ga.retain_ratio"),
                                ({"pathway_ga": {"select_points": 3}}, "pathway_ga.select_points"),
                                ({"pathway_ga": {"search_from": 1.0}}, "pathway_ga.search_from"),
                                ({"pathway_ga": {"optimizer": "adam"}}, "pathway_ga.optimizer"),
                                ({"pathway_ga": {"momentum": 1.0}}, "pathway_ga.momentum"),
                                ({"pathway_ga": {"steps": 10}}, "pathway_ga.steps"),
                                ({"npo": {"lr": 1.0}}, "hparams.npo")):
        with pytest.raises(SpecError, match=re.escape(field_path)):
            parse(["rl", "pathway_ga"], hparams)
    with pytest.raises(SpecError, match="pathway_bt"):  # BT is classification-only, so is its pathway
        parse_spec({"name": "p", "tasks": [{"name": "tofu", "ratios": [10], "methods": ["gd", "pathway_bt"]}]})


def test_tofu_token_accuracy_counts_answer_tokens_only():
    # vocabulary of 3; the model predicts token 1 everywhere
    logits = torch.tensor([0.0, 5.0, 0.0]).expand(2, 4, 3)
    forward = lambda **kw: type("Out", (), {"logits": logits})()  # noqa: E731
    batch = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "attention_mask": torch.ones(2, 4, dtype=torch.long),
             # labels are shifted by one: positions 1..3 are targets; -100 = prompt / padding
             "labels": torch.tensor([[-100, 1, 1, 2], [-100, -100, 1, -100]])}
    losses, acc = TOFU.losses_and_accuracy(forward, batch)
    assert acc == pytest.approx(3 / 4)  # 1, 1, 2 | 1: three of four answer tokens right
    assert losses.shape == (2,)
    assert losses[1] < losses[0]  # row 2: its single answer token is predicted right
