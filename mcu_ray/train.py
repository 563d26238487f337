"""Plain PyTorch training loops: the original model, an unlearned endpoint, a curve bend.

No Ray and no I/O here: each loop takes tensors and returns tensors, so it runs the
same inside a Ray Train worker, a Tune trial or a unit test. Each takes the process's
``Placement``: the device, the precision, and its share of a data-parallel job.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from mcu_ray.batches import batch_length, iterate_batches, select, trim_padding
from mcu_ray.curves import arc_length_sampler, coefficients, curve_forward, curve_parameters, initial_bends
from mcu_ray.methods import METHODS
from mcu_ray.methods.common import LossContext
from mcu_ray.methods.curriculum import CurriculumParams, forget_order, forget_reducer, needs_original_losses
from mcu_ray.methods.optimizers import SophiaParams, adamw, gnb_refresh, make_optimizer
from mcu_ray.placement import Placement, untouched


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the artifact is recorded as diverged."""


def check_finite(losses: torch.Tensor, step: int) -> None:
    """Raise DivergedError if any of the last steps' losses (up to ``step``) is NaN or infinite."""
    values = losses.tolist()
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        raise DivergedError(f"loss is {values[bad[0]]} at step {step - len(values) + bad[0]}")


FINITE_CHECK_EVERY = 10  # steps between loss checks: each check waits for the device (a GPU sync)


def run_steps(loss_of, batches, opt, placement: Placement, masks=None, schedule=None, draw=None,
              before_step=None, after_step=None, untouched=contextlib.nullcontext) -> dict:
    """The one training-step loop: unlearning, Bezier and pathway bends, supervised training.

    ``batches`` yields global (forget, retain) batches, the same on every worker of a job.
    Each worker takes its ``grad_accum`` micro-batches of each (``Placement.micro_batches``),
    weights each micro-batch's loss by its share of the global forget batch, and the
    gradients are summed over workers before the step: the step is the one a single
    process would take on the whole batch (exactly so for per-example losses; BatchNorm
    statistics and SuperLoss's running mean are per micro-batch). ``draw()``, if given,
    is called once per step on every worker (the curve's t) and passed to
    ``loss_of(forget, retain, drawn)`` -> (loss, {name: scalar tensor to log}). A NaN or infinite loss
    stops the job at the next check (every ``FINITE_CHECK_EVERY`` steps and at the end).
    ``before_step(drawn)`` runs on the synced, masked gradients just before the optimiser's step
    (the Bezier bend rescales them there); ``after_step(step, forget, retain)`` right after it
    (Sophia's sampled-label curvature refresh). ``untouched()``: the context a sharded worker's
    stand-in pass runs in (``placement.untouched`` over the model and the forget reducer).
    """
    params = [p for group in opt.param_groups for p in group["params"]]
    step, logs, padded = 0, {}, 0
    losses = torch.zeros(0, device=placement.device)  # this check window's step losses, summed over workers
    real = torch.zeros((), dtype=torch.long, device=placement.device)  # text: real tokens seen (no sync to count)
    for forget, retain in batches:
        drawn = draw() if draw is not None else None
        n = batch_length(forget)
        opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=placement.device)
        for forget_part, retain_part in zip(placement.micro_batches(forget), placement.micro_batches(retain)):
            share = batch_length(forget_part) / n
            if share == 0:  # a global batch smaller than the job's shards: this one adds nothing
                if not placement.sharded:
                    continue
                forget_part, retain_part = placement.stand_in(forget), placement.stand_in(retain)
            with untouched() if share == 0 else contextlib.nullcontext():  # restored after the backward pass
                with placement.autocast():
                    loss, logs = loss_of(forget_part, retain_part, drawn)
                weighted = loss.float() * share
                weighted.backward()
            total += weighted.detach()
            for part in (forget_part, retain_part) if share else ():
                if part is not None and "attention_mask" in part:
                    padded += part["attention_mask"].numel()
                    real += part["attention_mask"].sum()
        placement.sync_gradients(params)
        losses = torch.cat([losses, placement.sum_over_workers(total)[None]])
        for tensor, mask in masks or ():
            if tensor.grad is not None:
                tensor.grad.mul_(mask)
        if before_step is not None:
            before_step(drawn)
        opt.step()
        if schedule is not None:
            schedule.step()
        step += 1
        if after_step is not None:
            after_step(step, forget, retain)
        if step % FINITE_CHECK_EVERY == 0:
            check_finite(losses, step)
            losses = losses[-1:]
    if step:
        check_finite(losses, step)
    padding = {"padding_ratio": padded / int(real), "padded_tokens": padded, "real_tokens": int(real)} if padded else {}
    logged = {name: float(value) for name, value in logs.items()}  # the last step's, read once (no sync per step)
    return {"steps": step, "final_loss": float(losses[-1]) if step else float("nan"), **padding, **logged}


def train_supervised(model: nn.Module, task, batch: dict, *, epochs: int, lr: float, batch_size: int,
                     weight_decay: float, seed: int, placement: Placement | None = None) -> dict:
    """Ordinary training on ``batch`` (the original model on D, the retrained one on Dr).

    ``epochs`` 0 keeps the model as it is (e.g. a checkpoint already fine-tuned on D).
    """
    if epochs == 0:
        return {"steps": 0, "final_loss": float("nan")}
    placement = placement or Placement()
    order = torch.Generator().manual_seed(seed)
    optimizer = adamw(model.parameters(), lr, weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs * math.ceil(batch_length(batch) / batch_size))
    batches = ((minibatch, None) for _ in range(epochs)
               for minibatch in iterate_batches(batch, batch_size, order, group_by_length=True))
    model.train()
    return run_steps(lambda minibatch, _, __: (task.example_losses(model, minibatch).mean(), {}), batches,
                     optimizer, placement, schedule=schedule, untouched=lambda: untouched(model))


def _forever(batch: dict, batch_size: int, generator: torch.Generator):
    """Endless shuffled minibatches, reshuffled at every pass."""
    while True:
        yield from iterate_batches(batch, batch_size, generator, group_by_length=True)


def unlearning_batches(data, params, generator: torch.Generator, uses_retain: bool, order=None):
    """Each step: a forget minibatch, and (if the method uses it) a retain minibatch.

    ``order`` (a curriculum) fixes the forget set's visiting order; else it is shuffled
    (text grouped by length). ``generator`` must be the same on every worker of a job.
    """
    forget, retain = data.split("forget"), data.split("retain")
    if order is not None:
        forget = select(forget, order)
    retain_stream = _forever(retain, params.retain_batch_size, generator) if uses_retain else None
    step = 0
    for _ in range(params.epochs) if not params.steps else iter(int, 1):  # steps: as many passes as needed
        for forget_batch in iterate_batches(forget, params.batch_size, None if order is not None else generator,
                                            group_by_length=order is None):
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


def generators(seed: int, placement: Placement) -> tuple[torch.Generator, torch.Generator]:
    """(data order, method draws): the order is the same on every worker, a method's own
    randomness (RL's replacement targets) differs by rank, so shards get independent draws."""
    return (torch.Generator().manual_seed(seed),
            torch.Generator().manual_seed(seed + 7_919 * (placement.rank + 1)))


@dataclass
class Recipe:
    """What an unlearning run consists of besides its loss (an endpoint's, and its curve's bend's)."""

    opt: torch.optim.Optimizer  # AdamW (FO) or Sophia (SO), in decay groups
    refresh: Callable | None  # Sophia's sampled-label curvature refresh (``run_steps``' after_step)
    masks: list | None  # a masked method's (SU's) gradient masks
    order: torch.Tensor | None  # an ordering curriculum's fixed visiting order of Df
    reduce: Callable  # per-example forget losses -> scalar (SuperLoss under the default curriculum)


def recipe(forward, parts: list[dict], model: nn.Module, task, data, method, params, optimizer: str,
           optimizer_params: SophiaParams | None, curriculum: str, curriculum_params: CurriculumParams | None,
           teachers: Teachers, placement: Placement, method_generator: torch.Generator,
           chain: Callable | None = None) -> Recipe:
    """The optimiser over ``parts`` (name -> tensor dicts: the model's parameters, or a curve's bends;
    decay groups by ``model``'s names: no decay on biases and LayerNorm weights, as SOUL, MU-Bench and
    Hugging Face's Trainer), Sophia's refresh on ``forward`` with its own per-rank draws (the method's,
    RL's targets, stay as they are; ``chain``: see ``gnb_refresh``), masks, curriculum."""
    opt = make_optimizer(optimizer, parts, params.lr, params.weight_decay, optimizer_params, model=model)
    hessian_generator = torch.Generator().manual_seed(method_generator.initial_seed() + 1)
    order = None
    if needs_original_losses(curriculum, curriculum_params):
        order = forget_order(curriculum, curriculum_params,
                             split_losses(teachers.original, task, data.split("forget"), placement))
    return Recipe(opt, gnb_refresh(opt, task, forward, placement, hessian_generator, chain),
                  _grad_masks(method, teachers, task, data, params, parts, placement), order,
                  forget_reducer(curriculum, curriculum_params))


def unlearn(model: nn.Module, task, data, method_name: str, params, *, optimizer: str = "fo",
            optimizer_params: SophiaParams | None = None, curriculum: str = "none",
            curriculum_params: CurriculumParams | None = None, seed: int, teachers: Teachers | None = None,
            placement: Placement | None = None) -> dict:
    """Turn the original model (loaded into ``model``, on ``placement.device``) into an unlearned endpoint, in place."""
    method, teachers, placement = METHODS[method_name], teachers or Teachers(), placement or Placement()
    if method.loss is None:
        raise ValueError(f"{method_name} has no loss of its own: it is built from its source's endpoint by "
                         f"mcu_ray.jobs.build_pathway")
    order_generator, method_generator = generators(seed, placement)
    run = recipe(model, [dict(model.named_parameters())], model, task, data, method, params, optimizer,
                 optimizer_params, curriculum, curriculum_params, teachers, placement, method_generator)
    ctx = LossContext(task, data, model, method_generator, teachers.original, teachers.random, run.reduce)
    model.train()
    batches = unlearning_batches(data, params, order_generator, method.draws_retain(params), run.order)
    return run_steps(lambda forget, retain, _: method.loss(ctx, forget, retain, params), batches, run.opt, placement,
                     run.masks, after_step=run.refresh, untouched=lambda: untouched(model, run.reduce))


@torch.no_grad()
def split_losses(forward, task, split: dict, placement: Placement, batch_size: int = 256) -> torch.Tensor:
    """Per-example loss of ``forward`` over a whole split, in minibatches on the device; shape (n,), CPU."""
    out = []
    for batch in iterate_batches(split, batch_size):
        with placement.autocast():
            out.append(task.example_losses(forward, placement.batch(trim_padding(batch))).float().cpu())
    return torch.cat(out)


def _grad_masks(method, teachers: Teachers, task, data, params, parts: list[dict], placement: Placement) -> list | None:
    """(tensor, 0/1 mask) pairs of a masked method (SU), over each part's tensors by name (the mask
    computed once); None otherwise."""
    if method.grad_mask is None:
        return None
    by_name = method.grad_mask(teachers.original, task, data, params, placement)
    return [(tensor, placement.like(tensor, by_name[name])) for part in parts for name, tensor in part.items()
            if name in by_name]


def bend_budget(params, fit):
    """The first endpoint's knobs as its bend trains with them: the method's own budget
    (epochs or steps, lr, batch sizes) unless the curve's ``fit`` sets epochs, lr or batch size."""
    return dataclasses.replace(params, epochs=fit.epochs or params.epochs, steps=0 if fit.epochs else params.steps,
                               lr=fit.lr or params.lr, batch_size=fit.batch_size or params.batch_size)


def t_sampler(fit, control_points: list[dict], generator: torch.Generator, kind: str = "bezier"):
    """Each step's t, from ``generator`` (the order generator: the same t on every worker)."""
    if fit.t_sampling == "uniform":  # Garipov et al. 2018
        return lambda: float(torch.rand((), generator=generator))
    if fit.t_sampling == "normal":  # the authors' code: N(0.5, 0.1) clamped to [0, 1]
        return lambda: float((0.5 + 0.1 * torch.randn((), generator=generator)).clamp(0.0, 1.0))
    return lambda: arc_length_sampler(control_points, generator, kind)  # the paper: t ~ ||phi'(t)|| / length


def to_curve_gradients(opt: torch.optim.Optimizer, weights: list[float]) -> None:
    """Bend j's gradient, weights[j] * dL/dphi(t) through the curve, made dL/dphi(t) (each param
    group's ``part`` is its bend); a bend of weight 0 at this t gets none (its optimiser state rests)."""
    for group in opt.param_groups:
        weight = weights[group["part"]]
        for tensor in group["params"]:
            if weight == 0:
                tensor.grad = None
            elif tensor.grad is not None:
                tensor.grad.div_(weight)


def bend_weight_step(opt: torch.optim.Optimizer, rates: list[float], weights: list[float]) -> None:
    """The authors' bend step (MU-Bench ``trainer/base.py:147-154``, one bend): dL/dphi(t) at the
    learning rate times the bend's weight 2t(1-t); several bends each at their own weight."""
    to_curve_gradients(opt, weights)
    for group, rate in zip(opt.param_groups, rates):
        group["lr"] = rate * weights[group["part"]]


def fit_bends(model: nn.Module, theta_1: dict, theta_2: dict, task, data, method_name: str, params, fit, *,
              kind: str = "bezier", bends: int = 1, optimizer: str = "fo", optimizer_params: SophiaParams | None = None,
              curriculum: str = "none", curriculum_params: CurriculumParams | None = None, seed: int,
              teachers: Teachers | None = None, placement: Placement | None = None) -> tuple[list[dict], dict]:
    """Train a curve's bends (one: the paper's quadratic Bezier midpoint theta_12) with the first
    endpoint's recipe.

    As the MCU authors' code does (CLU-UML/MU-Bench ``trainer/base.py:123-158``): the bends
    start evenly spaced on the chord; each step draws one t (``fit.t_sampling``; default the
    paper's arc length weighting) and takes the first endpoint's method loss at phi(t) on that
    method's data, with its optimiser (AdamW or Sophia), curriculum and budget (``bend_budget``).
    With ``fit.lr_scale`` "bend_weight" (default) the step is theirs: each bend moves along
    dL/dphi(t) at the learning rate times its own coefficient c_j(t) (2t(1-t) for the one bend;
    several bends and polygonal chains generalise the authors' one-bend rule), and a bend whose
    coefficient is 0 at this t does not step; "none" steps on the bends' own gradients
    c_j(t) dL/dphi(t) at the plain rate (the same for plain SGD, not for Adam or Sophia, which
    normalise the gradient's scale away). The control points
    and the bends live on ``placement.device`` (float32 unless precision is bf16). Returns the
    bends (on the device) and a log.
    """
    method, teachers, placement = METHODS[method_name], teachers or Teachers(), placement or Placement()
    names = curve_parameters(model)
    theta_1 = placement.tensors({n: theta_1[n].detach().to(placement.dtype) for n in names})
    theta_2 = placement.tensors({n: theta_2[n].detach().to(placement.dtype) for n in names})
    trained = [{n: p.clone().requires_grad_(True) for n, p in bend.items()}
               for bend in initial_bends(theta_1, theta_2, bends)]
    control_points = [theta_1, *trained, theta_2]
    order_generator, method_generator = generators(seed, placement)
    loop_params = bend_budget(params, fit)
    sampler, drawn = t_sampler(fit, control_points, order_generator, kind), [0.5]

    def draw() -> float:  # the step's t, kept for Sophia's sampled-label refresh after the step
        drawn[0] = sampler()
        return drawn[0]

    def weights(t: float) -> list[float]:  # the bends' coefficients in phi(t)
        return coefficients(t, bends + 1, kind)[1:-1]

    def at_drawn_t(*args, **kwargs):
        return curve_forward(model, control_points, drawn[0], kind)(*args, **kwargs)

    run = recipe(at_drawn_t, trained, model, task, data, method, loop_params, optimizer, optimizer_params, curriculum,
                 curriculum_params, teachers, placement, method_generator,
                 chain=(lambda: to_curve_gradients(run.opt, weights(drawn[0]))) if fit.lr_scale == "bend_weight" else None)

    def loss_of(forget, retain, t):
        ctx = LossContext(task, data, curve_forward(model, control_points, t, kind), method_generator,
                          teachers.original, teachers.random, run.reduce)
        return method.loss(ctx, forget, retain, loop_params)

    rates = [group["lr"] for group in run.opt.param_groups]

    def bend_weight(t: float) -> None:
        bend_weight_step(run.opt, rates, weights(t))

    model.train()
    batches = unlearning_batches(data, loop_params, order_generator, method.draws_retain(loop_params), run.order)
    log = run_steps(loss_of, batches, run.opt, placement, run.masks,
                    draw=draw, before_step=bend_weight if fit.lr_scale == "bend_weight" else None,
                    after_step=run.refresh)
    return [{n: b.detach() for n, b in bend.items()} for bend in trained], log
