"""Plain PyTorch training loops: the original model, an unlearned endpoint, a curve bend.

No Ray and no I/O here: each loop takes tensors and returns tensors, so it runs the
same inside a Ray Train worker, a Tune trial or a unit test.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from mcu_ray.curves import curve_forward, curve_parameters, initial_bend
from mcu_ray.methods import METHODS
from mcu_ray.methods.common import LossContext
from mcu_ray.methods.curriculum import forget_order, forget_reducer, needs_original_losses
from mcu_ray.methods.optimizers import make_optimizer
from mcu_ray.tasks.classification import batch_length, iterate_batches


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the artifact is recorded as diverged."""


def check_finite(loss: torch.Tensor, step: int) -> None:
    if not math.isfinite(loss.item()):
        raise DivergedError(f"loss is {loss.item()} at step {step}")


def train_supervised(model: nn.Module, task, batch: dict, *, epochs: int, lr: float, batch_size: int,
                     weight_decay: float, seed: int) -> dict:
    """Ordinary training on ``batch`` (the original model on D, the retrained one on Dr).

    ``epochs`` 0 keeps the model as it is (e.g. a checkpoint already fine-tuned on D).
    """
    if epochs == 0:
        return {"steps": 0, "final_loss": float("nan")}
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs * math.ceil(batch_length(batch) / batch_size))
    model.train()
    step = 0
    for _ in range(epochs):
        for minibatch in iterate_batches(batch, batch_size, generator):
            loss = task.example_losses(model, minibatch).mean()
            check_finite(loss, step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
    return {"steps": step, "final_loss": loss.item()}


def _forever(batch: dict, batch_size: int, generator: torch.Generator):
    """Endless shuffled minibatches, reshuffled at every pass."""
    while True:
        yield from iterate_batches(batch, batch_size, generator)


def unlearning_batches(data, params, generator: torch.Generator, uses_retain: bool, order=None):
    """Each step: a forget minibatch, and (if the method uses it) a retain minibatch.

    ``order`` (a curriculum) fixes the forget set's visiting order; else it is shuffled.
    """
    forget, retain = data.split("forget"), data.split("retain")
    if order is not None:
        forget = {k: v[order] for k, v in forget.items()}
    retain_stream = _forever(retain, params.retain_batch_size, generator) if uses_retain else None
    step = 0
    for _ in range(params.epochs) if not params.steps else iter(int, 1):  # steps: as many passes as needed
        for forget_batch in iterate_batches(forget, params.batch_size, None if order is not None else generator):
            if params.steps and step == params.steps:
                return
            step += 1
            yield forget_batch, (next(retain_stream) if uses_retain else None)


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen copy in eval mode: the original model as a method's reference."""
    reference = copy.deepcopy(model).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    return reference


@dataclass
class Teachers:
    """Frozen models a method may consult: the original (NPO, BT, SU), a random net (BT)."""

    original: nn.Module | None = None
    random: nn.Module | None = None


def run_steps(loss_of, batches, opt, masks=None) -> dict:
    """The shared inner loop: loss, finiteness check, backward, masked gradients, step.

    ``loss_of(forget_batch, retain_batch)`` -> (loss, {name: float}) for each pair ``batches`` yields.
    """
    step, loss, logs = 0, None, {}
    for forget_batch, retain_batch in batches:
        loss, logs = loss_of(forget_batch, retain_batch)
        check_finite(loss, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for tensor, mask in masks or ():
            if tensor.grad is not None:
                tensor.grad.mul_(mask)
        opt.step()
        step += 1
    return {"steps": step, "final_loss": loss.item() if loss is not None else float("nan"), **logs}


def unlearn(model: nn.Module, task, data, method_name: str, params, *, optimizer: str = "fo",
            optimizer_params: dict | None = None, curriculum: str = "none", curriculum_params: dict | None = None,
            seed: int, teachers: Teachers | None = None) -> dict:
    """Turn the original model (loaded into ``model``) into an unlearned endpoint, in place."""
    method, teachers = METHODS[method_name], teachers or Teachers()
    if method.loss is None:
        raise ValueError(f"{method_name} has no loss of its own: it is built from its source's endpoint by "
                         f"mcu_ray.jobs.build_pathway")
    generator = torch.Generator().manual_seed(seed)
    opt = make_optimizer(optimizer, model.parameters(), params.lr, params.weight_decay, optimizer_params)
    masks = _grad_masks(method, teachers, task, data, params, dict(model.named_parameters()))
    order = None
    if needs_original_losses(curriculum, curriculum_params):
        with torch.no_grad():
            order = forget_order(curriculum, curriculum_params,
                                 task.example_losses(teachers.original, data.split("forget")))
    ctx = LossContext(task, data, model, generator, teachers.original, teachers.random,
                      forget_reducer(curriculum, curriculum_params))
    model.train()
    batches = unlearning_batches(data, params, generator, method.uses_retain, order)
    return run_steps(lambda forget, retain: method.loss(ctx, forget, retain, params), batches, opt, masks)


def _grad_masks(method, teachers: Teachers, task, data, params, tensors: dict) -> list | None:
    """(tensor, 0/1 mask) pairs of a masked method (SU), over ``tensors`` by name; None otherwise."""
    if method.grad_mask is None:
        return None
    by_name = method.grad_mask(teachers.original, task, data, params)
    return [(tensor, by_name[name]) for name, tensor in tensors.items() if name in by_name]


def fit_bezier_bend(model: nn.Module, theta_1: dict, theta_2: dict, task, data, method_name: str, params,
                    fit, *, seed: int, teachers: Teachers | None = None) -> tuple[dict, dict]:
    """Train the quadratic Bezier bend theta_12 with the first endpoint's objective.

    The bend starts on the chord; every minibatch draws one t ~ U(0, 1) and steps on
    L_U(phi(t)) (Garipov et al. 2018) with AdamW, whatever optimiser or curriculum made
    the endpoints. ``fit`` gives epochs/lr/batch size of the fit. Returns the bend and a log.
    """
    method, teachers = METHODS[method_name], teachers or Teachers()
    names = curve_parameters(model)
    theta_1 = {n: theta_1[n].detach() for n in names}
    theta_2 = {n: theta_2[n].detach() for n in names}
    bend = {n: p.clone().requires_grad_(True) for n, p in initial_bend(theta_1, theta_2).items()}
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(bend.values(), lr=fit.lr, weight_decay=fit.weight_decay)
    masks = _grad_masks(method, teachers, task, data, params, bend)
    loop_params = dataclasses.replace(params, epochs=fit.epochs, steps=0, batch_size=fit.batch_size)

    def loss_of(forget, retain):  # at one t ~ U(0, 1) per minibatch
        t = float(torch.rand((), generator=generator))
        ctx = LossContext(task, data, curve_forward(model, [theta_1, bend, theta_2], t), generator,
                          teachers.original, teachers.random)
        return method.loss(ctx, forget, retain, loop_params)

    model.train()
    batches = unlearning_batches(data, loop_params, generator, method.uses_retain)
    log = run_steps(loss_of, batches, opt, masks)
    return {n: b.detach() for n, b in bend.items()}, log
