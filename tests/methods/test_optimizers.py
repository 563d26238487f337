"""FO and SO optimisers: SO checked against SOUL's / MU-Bench's SophiaG written out here from their
source (mubench/trainer/soul.py), and Sophia's Gauss-Newton-Bartlett refresh against a hand computation."""
import dataclasses
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mcu_ray.errors import SpecError
from mcu_ray.methods import METHODS, resolve_hparams
from mcu_ray.methods.optimizers import (Sophia, SophiaParams, decay_groups, gnb_refresh, make_optimizer,
                                        target_count)
from mcu_ray.placement import Placement
from mcu_ray.tasks import TASKS
from mcu_ray.tasks.tofu import TASK as TOFU
from mcu_ray.train import train_supervised, unlearn

DIGITS = TASKS["digits"]


def soul_sophia(p, grads, lr, wd, beta1=0.9, beta2=0.95, rho=0.04, bs=5120):
    """MU-Bench's SophiaG (soul.py:89-238) as HF's Trainer runs it, in float64: per step, update_hessian()
    then update_exp_avg(), then decay, the second m update and the clipped sign step; bs = step()'s default."""
    p, m, h = np.array(p, float), 0.0, 0.0
    for g in map(np.asarray, grads):
        h = beta2 * h + (1 - beta2) * g * g  # soul.py:73
        m = beta1 * m + (1 - beta1) * g  # soul.py:86
        p = p * (1 - lr * wd)  # soul.py:221
        m = beta1 * m + (1 - beta1) * g  # soul.py:224
        ratio = np.minimum(np.abs(m) / (rho * bs * h + 1e-15), 1)  # soul.py:237
        p = p - lr * np.sign(m) * ratio  # soul.py:238
    return p, m, h


class Vector(nn.Module):
    def __init__(self, values):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(values))


# coordinates: unclipped (|g| > 0.0186 at step 1), clipped (tiny g: a sign step), zero, sign flip at step 2
P0 = [1.0, -0.5, 2.0, 0.3, 0.7]
G1 = [0.5, -2.0, 1e-3, 0.0, 0.05]
G2 = [0.2, -1.0, 2e-3, 0.0, -3.0]


@pytest.mark.parametrize("steps", [1, 2])
def test_default_sophia_is_mubench_sophiag(steps):
    """One step and two (the momentum and curvature order): the default SO optimiser, built as
    train.unlearn builds it, against soul.py's update written out above."""
    model = Vector(P0)
    opt = make_optimizer("so", model, lr=0.1, weight_decay=0.3, sophia=SophiaParams())
    for g in (G1, G2)[:steps]:
        model.weight.grad = torch.tensor(g)
        opt.step()
    p, m, h = soul_sophia(P0, (G1, G2)[:steps], lr=0.1, wd=0.3)
    state = opt.state[model.weight]
    np.testing.assert_allclose(model.weight.detach().numpy(), p, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(state["exp_avg"].numpy(), m, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(state["hessian"].numpy(), h, rtol=1e-6, atol=1e-12)
    clipped = P0[2]
    for _ in range(steps):
        clipped = clipped * (1 - 0.1 * 0.3) - 0.1  # a tiny gradient: the full step lr * sign(m)
    assert model.weight[2].item() == pytest.approx(clipped, rel=1e-6)
    assert abs(model.weight[0].item() - p[0]) < 1e-6 and abs(p[0] - P0[0] * (1 - 0.03) ** steps) < 0.01  # large g


def test_sophia_refreshes_curvature_every_period_inside_step():
    p = nn.Parameter(torch.tensor([0.0]))
    opt = Sophia([p], lr=0.01, betas=(0.0, 0.0), weight_decay=0.0, update_period=3)
    seen = []
    for g in (1.0, 2.0, 3.0, 4.0):
        p.grad = torch.tensor([g])
        opt.step()
        seen.append(opt.state[p]["hessian"].item())
    assert seen == [1.0, 1.0, 1.0, 16.0]  # h from steps 1 and 4 only


class Block(nn.Module):
    """Linear layers, a LayerNorm, an RMSNorm named as Llama's is, and a frozen tensor."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)
        self.ln = nn.LayerNorm(3)
        self.norm = type("LlamaRMSNorm", (nn.Module,), {})()
        self.norm.weight = nn.Parameter(torch.ones(3))
        self.head = nn.Linear(3, 2, bias=False)
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)


@pytest.mark.parametrize("kind", ["fo", "so"])
def test_biases_and_layernorm_weights_are_not_decayed(kind):
    model = Block()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = make_optimizer(kind, model, lr=0.1, weight_decay=0.5)
    assert all(p.requires_grad for group in opt.param_groups for p in group["params"])
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)  # no gradient step: only weight decay moves a tensor
    opt.step()
    decayed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert decayed == {"proj.weight", "head.weight"}
    for name in decayed:
        torch.testing.assert_close(model.get_parameter(name), before[name] * (1 - 0.1 * 0.5))
    groups = decay_groups(model, 0.5)
    assert [len(g["params"]) for g in groups] == [2, 4] and [g["weight_decay"] for g in groups] == [0.5, 0.0]
    # a curve's bend: tensors named like the model's parameters, grouped by those names
    bend = {n: p.detach().clone().requires_grad_(True) for n, p in model.named_parameters() if p.requires_grad}
    opt = make_optimizer(kind, bend, lr=0.1, weight_decay=0.5, model=model)
    decayed = [p for g in opt.param_groups if g["weight_decay"] for p in g["params"]]
    assert len(decayed) == 2 and decayed[0] is bend["proj.weight"] and decayed[1] is bend["head.weight"]
    plain = make_optimizer(kind, bend.values(), lr=0.1, weight_decay=0.5)  # tensors alone: one group
    assert len(plain.param_groups) == 1 and plain.param_groups[0]["weight_decay"] == 0.5


def test_make_optimizer_knobs_and_source_defaults():
    model = Vector([0.0, 0.0])
    assert isinstance(make_optimizer("fo", model, 1e-3, 0.0), torch.optim.AdamW)
    so = make_optimizer("so", model, 1e-3, 0.01, SophiaParams(lr=0.0, rho=0.05))
    group = so.param_groups[0]
    assert isinstance(so, Sophia) and (so.hessian, so.update_period) == ("gradient", 1)
    assert (group["lr"], group["rho"], group["betas"], group["weight_decay"], group["bs"]) == (
        1e-3, 0.05, (0.9, 0.95), 0.01, 5120)  # lr and weight decay: the run's
    so = make_optimizer("so", model, 1e-3, 0.01, SophiaParams(weight_decay=0.0, hessian="gnb"))
    assert (so.hessian, so.update_period, so.param_groups[0]["bs"], so.param_groups[0]["weight_decay"]) == (
        "gnb", 10, 0, 0.0)  # Sophia's k = 10; bs: the refresh's label count
    with pytest.raises(ValueError, match="optimizer"):
        make_optimizer("sgd", model, 1e-3, 0.0)
    with pytest.raises(SpecError, match=r"hp\.so\.hessian"):
        resolve_hparams("ga", DIGITS, {"so": {"hessian": "hutchinson"}}, "hp")
    assert resolve_hparams("ga", DIGITS, {"so": {"weight_decay": None}}, "hp").so.weight_decay is None


# ----------------------------------------------------------------------------- Gauss-Newton-Bartlett


def hand_sampled_labels(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """y ~ Categorical(softmax(logits)) by inversion: the number of cumulative probabilities <= u."""
    u = torch.rand(logits.shape[:-1], generator=generator)
    cdf = F.softmax(logits.float(), -1).cumsum(-1)
    return (cdf <= u[..., None]).sum(-1).clamp_max(logits.size(-1) - 1)


def digits_like(n: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.rand(n, 1, 8, 8, generator=g), "y": torch.randint(10, (n,), generator=g)}


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def test_classification_sampled_targets_follow_the_model():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 5.0]])
    task = dataclasses.replace(DIGITS, logits=lambda forward, batch: forward(batch["x"]))
    batch = {"x": logits.repeat(4000, 1), "y": torch.zeros(8000, dtype=torch.long)}
    drawn = task.sampled_targets(lambda x: x, batch, torch.Generator().manual_seed(0))["y"].view(4000, 2)
    for row in range(2):
        frequencies = torch.bincount(drawn[:, row], minlength=3).float() / 4000
        torch.testing.assert_close(frequencies, F.softmax(logits[row], -1), atol=0.03, rtol=0)
    again = task.sampled_targets(lambda x: x, batch, torch.Generator().manual_seed(0))["y"].view(4000, 2)
    assert torch.equal(drawn, again) and torch.equal(drawn, hand_sampled_labels(
        logits.repeat(4000, 1), torch.Generator().manual_seed(0)).view(4000, 2))


def test_tofu_sampled_targets_replace_answer_tokens_from_the_preceding_position():
    vocab, labels = 11, torch.tensor([[-100, -100, 4, 5, 6, -100], [-100, 7, 8, -100, -100, -100]])
    peaked = torch.full((2, 6, vocab), -30.0)
    for i in range(6):
        peaked[:, i, (3 * i + 1) % vocab] = 30.0  # position i predicts token 3i + 1: a sure draw
    forward = lambda input_ids, attention_mask: types.SimpleNamespace(logits=peaked)  # noqa: E731
    batch = {"input_ids": torch.zeros(2, 6, dtype=torch.long), "attention_mask": torch.ones(2, 6, dtype=torch.long),
             "labels": labels}
    sampled = TOFU.sampled_targets(forward, batch, torch.Generator().manual_seed(0))
    expected = labels.clone()
    for b, j in zip(*torch.nonzero(labels != -100, as_tuple=True)):
        expected[b, j] = (3 * (j - 1) + 1) % vocab  # token j is predicted at position j - 1
    assert torch.equal(sampled["labels"], expected) and sampled["input_ids"] is batch["input_ids"]
    assert target_count(batch) == 5
    # drawn from the position's distribution: with flat logits the hand inversion gives the same tokens
    flat = torch.randn(2, 6, vocab, generator=torch.Generator().manual_seed(1))
    forward = lambda input_ids, attention_mask: types.SimpleNamespace(logits=flat)  # noqa: E731
    sampled = TOFU.sampled_targets(forward, batch, torch.Generator().manual_seed(2))
    answer = F.pad(labels[:, 1:], (0, 1), value=-100) != -100
    by_hand = hand_sampled_labels(flat[answer], torch.Generator().manual_seed(2))
    assert torch.equal(sampled["labels"][:, 1:][answer[:, :-1]], by_hand)


def test_gnb_refresh_is_the_squared_gradient_on_sampled_labels():
    """h after one refresh = (1 - beta2) g_s*g_s, g_s the gradient of the mean cross-entropy on labels
    sampled from the model over the step's forget and retain batches; bs = their label count; no
    gradient left behind. Then a step: m once (Sophia's step), h untouched, rho * bs * h."""
    model, forget, retain = linear_model(), digits_like(6, 1), digits_like(4, 2)
    opt = make_optimizer("so", model, lr=0.01, weight_decay=0.0, sophia=SophiaParams(hessian="gnb", update_period=2))
    refresh = gnb_refresh(opt, DIGITS, model, Placement("cpu"), torch.Generator().manual_seed(5))
    for p in model.parameters():
        p.grad = torch.ones_like(p)  # the step's gradient, still there when after_step runs
    refresh(1, forget, retain)  # not a refresh step (k = 2)
    assert all(opt.state[p] == {} for p in model.parameters())

    generator = torch.Generator().manual_seed(5)
    losses = []
    for batch in (forget, retain):
        labels = hand_sampled_labels(model(batch["x"]).detach(), generator)
        losses.append(F.cross_entropy(model(batch["x"]), labels, reduction="sum"))
    g_s = torch.autograd.grad(sum(losses) / 10, list(model.parameters()))
    refresh(2, forget, retain)
    for p, g in zip(model.parameters(), g_s):
        torch.testing.assert_close(opt.state[p]["hessian"], (1 - 0.95) * g * g)
        assert p.grad is None
    assert opt.param_groups[0]["targets"] == 10

    p = next(model.parameters())
    h, before, grad = opt.state[p]["hessian"].clone(), p.detach().clone(), torch.randn_like(p)
    p.grad = grad
    opt.step()
    m = (1 - 0.9) * grad
    ratio = (m.abs() / (0.04 * 10 * h + 1e-15)).clamp(max=1)
    torch.testing.assert_close(opt.state[p]["exp_avg"], m)
    torch.testing.assert_close(opt.state[p]["hessian"], h)
    torch.testing.assert_close(p.detach(), before - 0.01 * m.sign() * ratio)


def _refresh_on_worker(rank: int, world_size: int, init_file: str, out: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    model, forget, retain = linear_model(), digits_like(6, 1), digits_like(4, 2)
    opt = make_optimizer("so", model, lr=0.01, weight_decay=0.0, sophia=SophiaParams(hessian="gnb", update_period=1))
    placement = Placement("cpu", rank=rank, world_size=world_size)
    gnb_refresh(opt, DIGITS, model, placement, torch.Generator().manual_seed(100 + rank))(1, forget, retain)
    torch.save([opt.state[p]["hessian"] for p in model.parameters()], f"{out}.{rank}")
    torch.distributed.destroy_process_group()


def test_gnb_refresh_sums_gradients_over_data_parallel_workers(tmp_path):
    """Two gloo workers, each its half of the batches and its own draws: both hold the h of the
    gradient summed over halves, each half's sampled-label loss divided by the global label count."""
    torch.multiprocessing.spawn(_refresh_on_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "h")), nprocs=2)
    model, forget, retain = linear_model(), digits_like(6, 1), digits_like(4, 2)
    total = 0
    for rank, halves in enumerate(((slice(0, 3), slice(0, 2)), (slice(3, 6), slice(2, 4)))):
        generator = torch.Generator().manual_seed(100 + rank)
        for batch, half in zip((forget, retain), halves):
            x = batch["x"][half]
            labels = hand_sampled_labels(model(x).detach(), generator)
            total = total + F.cross_entropy(model(x), labels, reduction="sum")
    g = torch.autograd.grad(total / 10, list(model.parameters()))
    for rank in range(2):
        for h, g_p in zip(torch.load(tmp_path / f"h.{rank}"), g):
            torch.testing.assert_close(h, (1 - 0.95) * g_p * g_p)


def test_unlearn_with_gnb_sophia_on_digits(monkeypatch):
    """End to end: GA and GD with Sophia's GNB curvature run through train.unlearn on digits, refresh
    every k-th step on the forget and retain batches, and move the model otherwise than SOUL's SO."""
    torch.set_num_threads(1)
    options = DIGITS.Options(width=4)
    data = DIGITS.load(options, 10)
    original = DIGITS.new_model(options, seed=0)
    train_supervised(original, DIGITS, data.split("train"), epochs=2, lr=3e-3, batch_size=64, weight_decay=0, seed=0)
    calls = []
    sample = DIGITS.sampled_targets
    monkeypatch.setattr(DIGITS, "sampled_targets", lambda *args: calls.append(1) or sample(*args), raising=False)
    weights = {}
    for method, hessian in (("ga", "gnb"), ("gd", "gnb"), ("gd", "gradient")):
        model = DIGITS.new_model(options, seed=0)
        model.load_state_dict(original.state_dict())
        calls.clear()
        log = unlearn(model, DIGITS, data, method, METHODS[method].Params(steps=6, lr=1e-3, batch_size=16),
                      optimizer="so", optimizer_params=SophiaParams(hessian=hessian, update_period=3), seed=0)
        assert log["steps"] == 6 and np.isfinite(log["final_loss"])
        assert len(calls) == {"ga": 2, "gd": 4}[method] * (hessian == "gnb")  # steps 3 and 6; forget (+ retain)
        weights[method, hessian] = {n: p.detach().clone() for n, p in model.named_parameters()}
        assert any(not torch.equal(w, original.get_parameter(n)) for n, w in weights[method, hessian].items())
    gap = max((weights["gd", "gnb"][n] - weights["gd", "gradient"][n]).abs().max() for n in weights["gd", "gnb"])
    assert gap > 1e-6


def test_unlearn_with_gnb_sophia_on_tiny_llama_tofu(monkeypatch):
    """The language-model path: RMSNorm weights undecayed, answer tokens sampled and counted."""
    torch.set_num_threads(1)
    options = TOFU.Options(synthetic_authors=4, eval_size=8, n_layer=1, n_embd=32,
                                              vocab_size=300, model="tiny-llama")
    data, model = TOFU.load(options, 10), TOFU.new_model(options, seed=0)
    undecayed = {n for n, p in model.named_parameters() if any(p is q for q in decay_groups(model, 0.1)[1]["params"])}
    assert undecayed == {"model.layers.0.input_layernorm.weight", "model.layers.0.post_attention_layernorm.weight",
                         "model.norm.weight"}
    counts = []
    sample = TOFU.sampled_targets
    monkeypatch.setattr(TOFU, "sampled_targets", lambda forward, batch, generator: counts.append(
        target_count(batch)) or sample(forward, batch, generator), raising=False)
    log = unlearn(model, TOFU, data, "gd", METHODS["gd"].Params(steps=2, batch_size=4, retain_batch_size=4),
                  optimizer="so", optimizer_params=SophiaParams(hessian="gnb", update_period=2), seed=0)
    assert log["steps"] == 2 and np.isfinite(log["final_loss"]) and len(counts) == 2 and min(counts) > 4
