"""The training loops against loops written out by hand: the same optimiser steps on the same
batches, gradient accumulation as one full-batch step, a loss that falls on a separable set,
divergence found at the step it happened, the budgets and step rules of unlearning and bends."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from mcu_ray.methods import METHODS
from mcu_ray.placement import Placement
from mcu_ray.spec import CurveFitSpec
from mcu_ray.train import (
    DivergedError, bend_budget, bend_weight_step, run_steps, t_sampler, to_curve_gradients, train_supervised,
    unlearning_batches,
)

CPU = Placement("cpu")


class CrossEntropy:
    """The smallest task ``train_supervised`` and ``run_steps`` need: cross-entropy of ``model(x)``."""

    @staticmethod
    def example_losses(model, batch, reduction="mean"):
        return nn.functional.cross_entropy(model(batch["x"]), batch["y"], reduction="none")  # (batch,)


def linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(3, 2)


def toy_batches(count: int, size: int = 6) -> list[tuple[dict, None]]:
    generator = torch.Generator().manual_seed(1)
    return [({"x": torch.randn(size, 3, generator=generator), "y": torch.randint(0, 2, (size,), generator=generator)},
             None) for _ in range(count)]


def mean_loss(model):
    return lambda forget, _, __: (CrossEntropy.example_losses(model, forget).mean(), {})


def test_run_steps_takes_the_steps_a_hand_written_loop_takes():
    batches = toy_batches(4)
    model, by_hand = linear(), linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    log = run_steps(mean_loss(model), batches, opt, CPU)
    hand_opt = torch.optim.SGD(by_hand.parameters(), lr=0.5)
    for forget, _ in batches:
        hand_opt.zero_grad()
        last = CrossEntropy.example_losses(by_hand, forget).mean()
        last.backward()
        hand_opt.step()
    assert log["steps"] == 4
    assert log["final_loss"] == pytest.approx(last.item(), rel=1e-6)
    for trained, expected in zip(model.parameters(), by_hand.parameters()):
        torch.testing.assert_close(trained, expected)


@pytest.mark.parametrize("grad_accum", [2, 3])
def test_accumulated_micro_batches_sum_to_the_full_batch_step(grad_accum):
    """Micro-batches weighted by their share of the batch: the gradient of the full batch's mean loss."""
    batch = toy_batches(1)[0][0]
    full, accumulated = linear(), linear()
    sgd = lambda m: torch.optim.SGD(m.parameters(), lr=1.0)  # noqa: E731  (lr 1: the step is the gradient)
    run_steps(mean_loss(full), [(batch, None)], sgd(full), CPU)
    log = run_steps(mean_loss(accumulated), [(batch, None)], sgd(accumulated), Placement("cpu", grad_accum=grad_accum))
    start = linear()
    CrossEntropy.example_losses(start, batch).mean().backward()
    for name, p in accumulated.named_parameters():
        torch.testing.assert_close(p, dict(start.named_parameters())[name] - dict(start.named_parameters())[name].grad)
        torch.testing.assert_close(p, dict(full.named_parameters())[name])
    with torch.no_grad():
        assert log["final_loss"] == pytest.approx(CrossEntropy.example_losses(linear(), batch).mean().item(), rel=1e-6)


def test_a_nan_loss_is_reported_at_the_step_it_appeared():
    """Steps are counted from 0; the check runs every ten steps and at the end, so step 12 of 15 is
    found at the end, naming step 12."""
    model = linear()
    calls = []

    def loss_of(forget, retain, drawn):
        calls.append(1)
        loss = CrossEntropy.example_losses(model, forget).mean()
        return (loss * float("nan") if len(calls) == 13 else loss), {}

    with pytest.raises(DivergedError, match=r"loss is nan at step 12$"):
        run_steps(loss_of, toy_batches(15), torch.optim.SGD(model.parameters(), lr=0.1), CPU)
    assert len(calls) == 15


def test_train_supervised_fits_a_separable_set():
    """Two clusters on either side of a plane: after training every point is classified right and the
    mean loss is below the untrained model's, computed here."""
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(40) % 2
    x = torch.randn(40, 3, generator=generator) * 0.3 + (2.0 * y[:, None] - 1.0)  # centres (-1,-1,-1), (1,1,1)
    model = linear()
    with torch.no_grad():
        before = CrossEntropy.example_losses(model, {"x": x, "y": y}).mean().item()
    log = train_supervised(model, CrossEntropy(), {"x": x, "y": y}, epochs=20, lr=0.05, batch_size=8,
                           weight_decay=0.0, seed=0, placement=CPU)
    with torch.no_grad():
        after = CrossEntropy.example_losses(model, {"x": x, "y": y}).mean().item()
        assert (model(x).argmax(-1) == y).all()
    assert log["steps"] == 20 * math.ceil(40 / 8)
    assert after < before / 4


def test_zero_epochs_keep_the_model():
    model, untouched = linear(), linear()
    log = train_supervised(model, CrossEntropy(), {"x": torch.zeros(4, 3), "y": torch.zeros(4, dtype=torch.long)},
                           epochs=0, lr=1.0, batch_size=2, weight_decay=0.0, seed=0)
    assert log["steps"] == 0
    for a, b in zip(model.parameters(), untouched.parameters()):
        assert torch.equal(a, b)


class Splits:
    def __init__(self, forget: int, retain: int):
        self.sizes = {"forget": forget, "retain": retain}

    def split(self, name):
        return {"x": torch.arange(self.sizes[name], dtype=torch.float32)[:, None]}


def test_unlearning_batches_follow_epochs_or_steps():
    """5 forget rows in batches of 2: 3 batches per pass; ``steps`` cuts across passes; 7 retain rows in
    batches of 4 are drawn endlessly, pass after pass (4, 3, 4, 3 ...)."""
    data = Splits(5, 7)
    params = SimpleNamespace(epochs=2, steps=0, batch_size=2, retain_batch_size=4)
    by_epochs = list(unlearning_batches(data, params, torch.Generator().manual_seed(0), uses_retain=False))
    assert [len(f["x"]) for f, _ in by_epochs] == [2, 2, 1] * 2
    assert all(r is None for _, r in by_epochs)
    by_steps = list(unlearning_batches(data, SimpleNamespace(**{**vars(params), "steps": 7}),
                                       torch.Generator().manual_seed(0), uses_retain=True))
    assert [len(f["x"]) for f, _ in by_steps] == [2, 2, 1, 2, 2, 1, 2]
    assert [len(r["x"]) for _, r in by_steps] == [4, 3] * 3 + [4]
    first_pass = torch.cat([f["x"] for f, _ in by_steps[:3]]).flatten()
    assert sorted(first_pass.tolist()) == [0, 1, 2, 3, 4]  # each pass visits every forget row once


def test_an_ordering_curriculum_fixes_the_visiting_order():
    order = torch.tensor([4, 2, 0, 1, 3])
    params = SimpleNamespace(epochs=1, steps=0, batch_size=2, retain_batch_size=4)
    visited = [f["x"].flatten().tolist() for f, _ in
               unlearning_batches(Splits(5, 3), params, torch.Generator().manual_seed(0), False, order=order)]
    assert visited == [[4.0, 2.0], [0.0, 1.0], [3.0]]


def test_a_bend_trains_with_the_endpoints_budget_unless_the_fit_sets_one():
    params = METHODS["ga"].Params(epochs=5, steps=30, lr=1e-3, batch_size=16)
    own = bend_budget(params, CurveFitSpec())
    assert (own.epochs, own.steps, own.lr, own.batch_size) == (5, 30, 1e-3, 16)
    fit = bend_budget(params, CurveFitSpec(epochs=2, lr=0.1, batch_size=8))
    assert (fit.epochs, fit.steps, fit.lr, fit.batch_size) == (2, 0, 0.1, 8)  # epochs replace a step budget


def test_uniform_and_normal_t_come_from_the_generator():
    uniform = t_sampler(CurveFitSpec(t_sampling="uniform"), [], torch.Generator().manual_seed(3))
    expected = torch.rand(2, generator=torch.Generator().manual_seed(3))  # two draws of one generator
    assert [uniform(), uniform()] == pytest.approx(expected.tolist())
    normal = t_sampler(CurveFitSpec(t_sampling="normal"), [], torch.Generator().manual_seed(3))
    z = torch.randn((), generator=torch.Generator().manual_seed(3))
    assert normal() == pytest.approx(min(1.0, max(0.0, 0.5 + 0.1 * z.item())))


def test_the_bend_weight_step_divides_each_gradient_by_its_weight_and_scales_its_rate():
    """Bend j's gradient through the curve is c_j(t) dL/dphi; the step wants dL/dphi at lr * c_j(t),
    and a bend of weight 0 gets no gradient (its optimiser state rests)."""
    a, b = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
    opt = torch.optim.SGD([{"params": [a], "part": 0}, {"params": [b], "part": 1}], lr=0.1)
    a.grad, b.grad = torch.tensor([0.5, 1.0]), torch.tensor([2.0, 2.0])
    bend_weight_step(opt, [0.1, 0.1], [0.5, 0.0])
    assert a.grad.tolist() == [1.0, 2.0] and b.grad is None
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.0])
    a.grad = torch.tensor([0.25, 0.25])
    to_curve_gradients(opt, [0.25, 1.0])
    assert a.grad.tolist() == [1.0, 1.0]
