"""Pathway unlearning: its decisions on hand-made numbers (tensor mask, beta rule, t*), the
masked midpoint training, the export of phi(t*) as an endpoint, and its place in plan and spec."""
import re

import numpy as np
import pytest
import torch
from torch import nn

from mcu_ray.placement import Placement

from mcu_ray import jobs
from mcu_ray.curves import load_state
from mcu_ray.evaluate import evaluate_state, task_data
from mcu_ray.methods import METHODS
from mcu_ray.pathway import BetaRule, accuracy, fit_pathway_bend, select_t, select_tensors, tensor_scores
from mcu_ray.plan import make_plan
from mcu_ray.spec import SpecError, parse_spec
from mcu_ray.store import Store
from mcu_ray.tasks.tofu import TASK as TOFU
from mcu_ray.train import train_supervised, unlearn
from tests.conftest import tiny_digits_task

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


def test_beta_rule():
    rule = BetaRule()
    assert rule(forget_acc=0.80, retain_acc=0.99, forget_baseline=0.85, retain_baseline=1.0) == 0.0
    assert rule(forget_acc=0.85, retain_acc=0.99, forget_baseline=0.85, retain_baseline=1.0) == 0.0
    # forget gap (0.90-0.85)/0.85 = 0.059 < retain gap (1-0.90)/1 = 0.10: gentle
    assert rule(forget_acc=0.90, retain_acc=0.90, forget_baseline=0.85, retain_baseline=1.0) == 0.01
    # forget gap 0.176 > retain gap 0.01: hard
    assert rule(forget_acc=1.00, retain_acc=0.99, forget_baseline=0.85, retain_baseline=1.0) == 0.5
    assert BetaRule(low=0.1, high=2.0)(1.0, 0.99, 0.85, 1.0) == 2.0


def test_t_star_on_synthetic_curves():
    ts = np.linspace(0, 1, 16)
    # a forget accuracy falling linearly from 1 to 0 and a flat retain accuracy: the retrained
    # model's 0.6 / 0.9 is met exactly at t = 0.4
    metrics = {"acc_forget": 1 - ts, "acc_retain": np.full_like(ts, 0.9)}
    t, gap = select_t(ts, metrics, {"acc_forget": 0.6, "acc_retain": 0.9})
    assert t == pytest.approx(0.4, abs=1e-3) and gap == pytest.approx(0.0, abs=1e-3)
    # a parabola with its minimum between grid points: interpolation finds it near 0.53
    loss = (ts - 0.53) ** 2
    t, _ = select_t(ts, {"loss": loss}, {"loss": 0.0})
    assert abs(t - 0.53) < 1 / 15
    # averaging two metrics pulls t* between their individual optima
    t, gap = select_t(ts, {"a": ts, "b": ts}, {"a": 0.2, "b": 0.8})
    assert gap == pytest.approx(0.3, abs=1e-3)
    # ... where every t in [0.2, 0.8] is as good: ties go to the point furthest from the original
    assert t == pytest.approx(0.8, abs=1e-3)
    # accuracies equal to the retrained model's from t = 0 to 0.4 (a plateau), worse after
    plateau = {"acc": np.where(ts <= 0.4, 1.0, 1.0 - (ts - 0.4))}
    t, gap = select_t(ts, plateau, {"acc": 1.0})
    assert gap == 0.0 and 0.4 - 1 / 15 <= t <= 0.4 + 1e-9
    # a NaN point (a diverged evaluation) is never chosen
    t, _ = select_t(ts, {"loss": np.where(np.isclose(ts, ts[8]), np.nan, (ts - ts[8]) ** 2)}, {"loss": 0.0})
    assert not ts[7] < t < ts[9]


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
    task, options, data = task_data(ep.task, ep.options, ep.ratio)
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
    test_accuracy = accuracy(model.eval(), task, data.split("test"), Placement("cpu"))  # the forget baseline: data never trained on
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
    assert log["steps"] > 0 and 0 <= log["beta_zero_fraction"] <= 1
    assert log["forget_baseline"] == pytest.approx(test_accuracy, abs=1e-6)


def test_pathway_endpoint_is_exported_as_an_ordinary_endpoint(digits_models, tmp_path):
    plan, _ = digits_models
    store = Store(str(tmp_path))
    for item in plan.originals.values():
        jobs.build_original(store, item)
    for item in plan.retrained.values():
        jobs.build_retrained(store, item)
    pathway_ep = next(e for e in plan.endpoints.values() if e.source and e.seed == 0)
    jobs.build_endpoint(store, plan.endpoints[pathway_ep.source])
    meta = jobs.build_endpoint(store, pathway_ep)

    t_star = meta["pathway"]["t_star"]
    points = store.load_points(pathway_ep.key).to_pylist()
    assert [p["t"] for p in points] == pytest.approx([0, 0.25, 0.5, 0.75, 1])
    assert 0 <= t_star <= 1
    targets = store.read_meta(pathway_ep.reference)["metrics"]
    names = meta["pathway"]["selection_metrics"]
    grid_best = min(jobs.mean_gap(p, targets, names) for p in points)
    assert meta["pathway"]["predicted_gap"] <= grid_best + 1e-9
    assert meta["pathway"]["gap"] <= grid_best + 1e-9  # never worse than an evaluated point
    assert meta["pathway"]["gap"] == pytest.approx(jobs.mean_gap(meta["metrics"], targets, names))
    # safetensors weights that load into a fresh model and give the stored metrics: phi(t*) itself
    again = evaluate_state(pathway_ep.task, pathway_ep.options, pathway_ep.ratio, store.load_weights(pathway_ep.key),
                           (store.uri, pathway_ep.reference), Placement("cpu"))
    assert again == pytest.approx(meta["metrics"], abs=1e-6)
    assert store.verify(pathway_ep.key) and meta["kind"] == "endpoint"
    rows = jobs.pathway_rows(store, pathway_ep, "ga")
    assert [r["model"] for r in rows[:4]] == ["original", "source", "pathway", "retrained"] and len(rows) == 4 + 5
    assert rows[2]["gap_to_retrained"] == pytest.approx(meta["pathway"]["gap"])
    assert rows[0]["acc_forget"] == points[0]["acc_forget"]  # the original is the curve at t=0


def test_a_failed_source_fails_its_pathway_endpoint(digits_models, tmp_path):
    plan, _ = digits_models
    store = Store(str(tmp_path))
    pathway_ep = next(e for e in plan.endpoints.values() if e.source)
    store.save_artifact(pathway_ep.source, {"status": "diverged", "reason": "loss is nan at step 3"})
    meta = jobs.build_endpoint(store, pathway_ep)
    assert meta["status"] == "diverged" and "loss is nan at step 3" in meta["reason"]


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
    assert bezier.objective == "ga" and bezier.hparams == spec.tasks[0].hparams["ga"]["params"]
    counts = plan.counts()  # each pathway endpoint evaluates select_points t values and then t*
    assert counts["evaluations"] == (2 * counts["retrained"] + counts["endpoints"] + counts["curves"] * 14
                                     + len(pathways) * spec.tasks[0].hparams["pathway_ga"]["params"]["select_points"])


def test_spec_checks_pathway_knobs():
    def parse(methods, hparams):
        return parse_spec({"name": "p", "tasks": [tiny_digits_task(methods=methods, hparams=hparams)]})

    # the source's knobs may be set without listing the source itself
    spec = parse(["rl", "pathway_ga"], {"ga": {"lr": 0.5}, "pathway_ga": {"k": 0.2}})
    assert spec.tasks[0].hparams["ga"]["params"]["lr"] == 0.5
    assert spec.tasks[0].hparams["pathway_ga"]["params"]["k"] == 0.2
    for hparams, field_path in (({"pathway_ga": {"k": 1.5}}, "pathway_ga.k"),
                                ({"pathway_ga": {"k": 0.8, "k_r": 0.3}}, "pathway_ga.k"),
                                ({"pathway_ga": {"retain_ratio": 0}}, "pathway_ga.retain_ratio"),
                                ({"pathway_ga": {"select_points": 2}}, "pathway_ga.select_points"),
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
