"""Pathway unlearning (Shi & Wang 2025, arXiv 2505.10859): the curve and its three decisions.

A quadratic Bezier curve runs from the original model (t=0) to an unlearned endpoint
(t=1); only the bend trains, and only a subset of its tensors. Three decisions, each a
plain function testable on numbers: which tensors train (``select_tensors``), how hard
to push on the forget set (``BetaRule``) and which point to export (``select_t``).
``fit_pathway_bend`` is the loop that uses the first two; no Ray and no I/O here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mcu_ray.batches import batch_length, iterate_batches, select, trim_padding
from mcu_ray.curves import curve_forward, curve_parameters, initial_bend
from mcu_ray.methods.common import split_gradients
from mcu_ray.methods.optimizers import adamw
from mcu_ray.placement import Placement
from mcu_ray.train import generators, run_steps, unlearning_batches


def select_tensors(retain_scores: dict, forget_scores: dict, sizes: dict, k: float, k_r: float) -> list[str]:
    """Names of the tensors the bend may train.

    ``retain_scores`` / ``forget_scores``: per tensor, ||grad L(Dr)||_2 / numel and
    ||grad(-L(Df))||_2 / numel. First the tensors most important to Dr are excluded, highest
    retain score first, until at least ``k_r`` of all parameters are out; then, among the
    rest, tensors are taken by forget score, highest first, until at least ``k`` of all
    parameters are in. Both fractions are of the model's total parameter count.
    """
    total = sum(sizes.values())
    excluded, out = set(), 0
    for name in sorted(sizes, key=lambda n: retain_scores[n], reverse=True):
        if out >= k_r * total:
            break
        excluded.add(name)
        out += sizes[name]
    selected, inside = [], 0
    for name in sorted((n for n in sizes if n not in excluded), key=lambda n: forget_scores[n], reverse=True):
        if inside >= k * total:
            break
        selected.append(name)
        inside += sizes[name]
    return selected


@dataclass(frozen=True)
class BetaRule:
    """The adaptive weight of the forget term, recomputed at every step."""

    low: float = 0.01  # the forget gap is the smaller one: push gently
    high: float = 0.5  # the forget gap dominates: push hard

    def __call__(self, forget_acc: float, retain_acc: float, forget_baseline: float, retain_baseline: float) -> float:
        """0 once forget accuracy is at or below its baseline; else compare the relative gaps."""
        if forget_acc <= forget_baseline:
            return 0.0
        forget_gap = (forget_acc - forget_baseline) / max(forget_baseline, 1e-12)
        retain_gap = max(0.0, retain_baseline - retain_acc) / max(retain_baseline, 1e-12)
        return self.low if forget_gap < retain_gap else self.high


def select_t(ts, metrics: dict, targets: dict, resolution: int = 1001) -> tuple[float, float]:
    """t* minimising the mean absolute gap to the target (retrained) metrics, and that gap.

    Ties go to the largest t: where the original model and a point further along are
    equally close to the retrained one, the point that has moved towards unlearning wins.

    ``metrics``: name -> values at ``ts`` (the evaluated grid); values in between are
    linearly interpolated on ``resolution`` points of [min t, max t].
    """
    ts = np.asarray(ts, float)
    order = np.argsort(ts)
    fine = np.linspace(ts[order][0], ts[order][-1], resolution)
    gaps = np.mean([np.abs(np.interp(fine, ts[order], np.asarray(values, float)[order]) - targets[name])
                    for name, values in metrics.items()], axis=0)
    if np.isnan(gaps).all():
        raise ValueError("every point of the curve has a NaN metric: no t* to choose")
    # between a NaN (diverged) point and its neighbours nothing is chosen; among equally close
    # points the one furthest along the curve, i.e. furthest from the original model, is
    best = int(np.flatnonzero(gaps <= np.nanmin(gaps) + 1e-9)[-1])
    return float(fine[best]), float(gaps[best])


def tensor_scores(model: nn.Module, task, split: dict, placement: Placement, batch_size: int = 256) -> dict[str, float]:
    """||grad of the summed loss over ``split``||_2 / numel, per trainable tensor, at ``model``'s weights.

    The norm is the same for L and -L, so this is both score_r (on Dr) and score_f (on Df).
    """
    grads = split_gradients(model, task, split, placement, batch_size)
    return {name: float(grads[name].norm() / p.numel()) if name in grads else 0.0
            for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def accuracy(forward, task, split: dict, placement: Placement, batch_size: int = 256) -> float:
    """The task's accuracy on a split (classes; answer tokens for an LM), example-weighted over batches."""
    total = correct = 0.0
    for batch in iterate_batches(split, batch_size):
        n = batch_length(batch)
        with placement.autocast():
            correct += task.losses_and_accuracy(forward, placement.batch(trim_padding(batch)))[1] * n
        total += n
    return correct / max(total, 1)


def subset_size(n: int, fraction: float) -> int:
    """Examples in a ``fraction`` of ``n`` (at least one)."""
    return max(1, round(fraction * n))


def subset(split: dict, fraction: float, generator: torch.Generator) -> dict:
    """A seeded random ``fraction`` of a split."""
    n = batch_length(split)
    return select(split, torch.randperm(n, generator=generator)[: subset_size(n, fraction)])


def mixed_batch_sizes(batch_size: int, n_forget: int, n_retain: int) -> tuple[int, int]:
    """(forget, retain) examples of a ``batch_size`` batch mixing Df and the retain subset in proportion."""
    forget_size = max(1, round(batch_size * n_forget / (n_forget + n_retain)))
    return forget_size, max(1, batch_size - forget_size)


@dataclass
class ReplacedSplits:
    """A task's splits with some replaced (pathway: Dr by the retain subset the curve trains on)."""

    data: Any
    replaced: dict  # split name -> batch dict

    def split(self, name: str) -> dict:
        return self.replaced[name] if name in self.replaced else self.data.split(name)


def fit_pathway_bend(model: nn.Module, theta_u: dict, task, data, params, *, seed: int,
                     placement: Placement | None = None) -> tuple[dict, dict]:
    """Train the midpoint of the curve original -> ``theta_u`` (``model`` holds the original).

    Each step: one t ~ U(0, 1), a batch mixing Df and the retain subset in proportion,
    loss L(Dr) - beta * L(Df) at phi(t), beta from ``BetaRule`` on this batch's forget and
    retain accuracy against the original's baselines: its accuracy on data it never saw
    (the task's holdout split) and on the retain subset. Only the masked tensors of the
    midpoint require gradients; the rest stay on the chord. With several workers, beta
    is decided on each worker's shard. Returns the midpoint (on the device) and a log.
    """
    placement = placement or Placement()
    names = curve_parameters(model)
    weights = dict(model.named_parameters())
    theta_o = {n: weights[n].detach().clone() for n in names}
    theta_u = placement.tensors({n: theta_u[n].detach().to(placement.dtype) for n in names})
    generator, _ = generators(seed, placement)
    forget, retain = data.split("forget"), subset(data.split("retain"), params.retain_ratio, generator)

    model.eval()
    baselines = (accuracy(model, task, data.split(task.holdout_split), placement),
                 accuracy(model, task, retain, placement))
    sizes = {n: weights[n].numel() for n in names}
    scores = [tensor_scores(model, task, split, placement, params.batch_size)
              for split in (data.split("retain"), forget)]
    selected = select_tensors(*scores, sizes, params.k, params.k_r)
    bend = {n: b.requires_grad_(n in selected) for n, b in initial_bend(theta_o, theta_u).items()}
    opt = adamw([bend[n] for n in selected], params.lr, params.weight_decay)

    forget_size, retain_size = mixed_batch_sizes(params.batch_size, batch_length(forget), batch_length(retain))
    loop = dataclasses.replace(params, steps=0, batch_size=forget_size, retain_batch_size=retain_size)
    rule, betas = BetaRule(params.beta_low, params.beta_high), []

    def loss_of(forget_batch, retain_batch, t):
        forward = curve_forward(model, [theta_o, bend, theta_u], t)
        forget_losses, forget_acc = task.losses_and_accuracy(forward, forget_batch)
        retain_losses, retain_acc = task.losses_and_accuracy(forward, retain_batch)
        betas.append(rule(forget_acc, retain_acc, *baselines))
        return retain_losses.mean() - betas[-1] * forget_losses.mean(), {}

    model.train()
    batches = unlearning_batches(ReplacedSplits(data, {"retain": retain}), loop, generator, uses_retain=True)
    # one t ~ U(0, 1) per step, the same on every worker
    log = {**run_steps(loss_of, batches, opt, placement, draw=lambda: float(torch.rand((), generator=generator))),
           "forget_baseline": baselines[0], "retain_baseline": baselines[1],
           "selected_tensors": selected, "trained_fraction": sum(sizes[n] for n in selected) / sum(sizes.values()),
           "mean_beta": float(np.mean(betas)) if betas else 0.0,
           "beta_zero_fraction": float(np.mean([b == 0 for b in betas])) if betas else 0.0}
    return {n: b.detach() for n, b in bend.items()}, log
