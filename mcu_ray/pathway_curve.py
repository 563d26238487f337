"""Pathway unlearning (Shi & Wang 2025, arXiv 2505.10859): the curve and its three decisions.

A quadratic Bezier curve runs from the original model (t=0) to an unlearned endpoint
(t=1); only the bend trains, and only a subset of its tensors. Three decisions, each a
plain function testable on numbers: which tensors train (``select_tensors``), how hard
to push on the forget set (``BetaRule``) and which point to export (``select_t``).
``fit_pathway_bend`` is the loop that uses the first two; no Ray and no I/O here.

Reference: the authors' code, github.com/TIML-Group/Mode-Connectivity-Unlearning at ff1f215
(``unlearn.py``, ``train.py``, ``utils.py``, ``eval_curve.py``, ``generate_weight_mask.py``).
Neither the bend's training nor the choice of t* reads the retrained model: both align the
curve with the original model's accuracies, as the reference's "alignment principle" does.

Also from the reference: the tensor scores ||g||_2 / numel and the greedy k_r / k mask
(generate_weight_mask.py:81-118), one t ~ U(0, 1) per step (curves.py:485-491), the loss
L(Dr) - beta L(Df) (unlearn.py:108), a fixed seeded retain subset (train.py:200-203).
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
    """The adaptive weight of the forget term, recomputed at every step (the reference's
    ``training_step_dynamic``, unlearn.py:68-109).

    Both gaps are signed and relative, accuracy minus baseline over the baseline, as the
    reference computes them (unlearn.py:104): forget_gap = (forget_acc - forget_baseline) /
    forget_baseline, retain_gap = (retain_acc - retain_baseline) / retain_baseline. So a retain
    accuracy *above* its baseline (a surplus larger than the forget excess) is what makes the push
    gentle; at or below its baseline the push is hard.
    """

    low: float = 0.01  # the forget excess is smaller than the retain surplus: push gently
    high: float = 0.5  # otherwise: push hard

    def __call__(self, forget_acc: float, retain_acc: float, forget_baseline: float, retain_baseline: float) -> float:
        """0 once forget accuracy is at or below its baseline; ``low`` if forget_gap < retain_gap; else ``high``.

        A zero baseline (the reference's class forgetting) reads as 1e-12: the gap is then huge, as its inf is.
        """
        if forget_acc <= forget_baseline:
            return 0.0
        forget_gap = (forget_acc - forget_baseline) / max(forget_baseline, 1e-12)
        retain_gap = (retain_acc - retain_baseline) / max(retain_baseline, 1e-12)
        return self.low if forget_gap < retain_gap else self.high


SEARCH_STEP = 0.01  # spacing of the dense t grid t* is chosen on (utils.py:186: 26 points on [0.75, 1])


def select_t(ts, metrics: dict, targets: dict, search_from: float = 0.75) -> tuple[float, float]:
    """t* and its predicted gap: the reference's ``find_optimal_t`` (utils.py:175-195).

    ``metrics``: name -> values at the evaluated ``ts``; ``targets``: name -> the value to align
    with. Each metric is interpolated by a cubic spline through the evaluated points (not-a-knot,
    as ``interp1d(kind='cubic')``), read on a dense grid of step 0.01 over [``search_from``, 1],
    and t* minimises the mean over metrics of |metric(t) - target|; ties (to 1e-12) go to the first,
    i.e. smallest, t (``np.argmin``). The reference returns the index into its dense grid; this returns t.

    A point where some metric is NaN (a diverged evaluation) is left out of the interpolation;
    the dense grid keeps to the evaluated points' range (no extrapolation).
    """
    from scipy.interpolate import make_interp_spline

    ts = np.asarray(ts, float)
    values = np.stack([np.asarray(metrics[name], float) for name in metrics])  # (metrics, points)
    valid = np.isfinite(values).all(axis=0)
    if not valid.any():
        raise ValueError("every point of the curve has a NaN metric: no t* to choose")
    order = np.argsort(ts[valid])
    known, values = ts[valid][order], values[:, valid][:, order]
    dense = np.linspace(search_from, 1.0, int(round((1.0 - search_from) / SEARCH_STEP)) + 1)
    dense = dense[(dense >= known[0] - 1e-12) & (dense <= known[-1] + 1e-12)]
    if len(dense) == 0:
        raise ValueError(f"no evaluated point of the curve reaches the search interval [{search_from}, 1]")
    degree = min(3, len(known) - 1)  # cubic as the reference; fewer points than 4: what they allow
    gaps = np.mean([np.abs(make_interp_spline(known, row, k=degree)(dense) - targets[name])
                    for name, row in zip(metrics, values)], axis=0)
    # the first minimum, i.e. the smallest t, as np.argmin in the reference; gaps equal but for the
    # spline's rounding (a flat stretch) count as ties
    best = int(np.flatnonzero(gaps <= gaps.min() + 1e-12)[0])
    return float(dense[best]), float(gaps[best])


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


SELECTION_SPLITS = ("forget", "retain")  # what t* aligns along the curve: accuracy on Df and on Dr


def baselines(model: nn.Module, task, data, placement: Placement) -> dict:
    """The original's accuracies the curve aligns with, by the reference's "alignment principle"
    (unlearn.py:68-75, plot_region.py:53-56): on Df, its accuracy on data it never saw (the task's
    ``validation_split``: the reference's "val", in its code the test set); on Dr, its accuracy on
    the training retain data (the reference: its "train" accuracy). ``model`` holds the original.
    The retrained model is never read."""
    held_out = data.split(task.validation_split)
    if batch_length(held_out) == 0:
        raise ValueError(f"the task's {task.validation_split!r} split is empty: pathway unlearning aligns the "
                         "forget accuracy with the original's accuracy there (classification: set "
                         "options.val_fraction > 0)")
    model.eval()
    return {"forget": accuracy(model, task, held_out, placement),
            "retain": accuracy(model, task, data.split("retain"), placement)}


def selection_accuracies(model: nn.Module, task, data, placement: Placement) -> dict:
    """``model``'s accuracy on Df and on Dr, measured as the baselines are (eval mode; BatchNorm
    statistics as the caller set them): the metrics t* is chosen on (eval_curve.py:116-117)."""
    model.eval()
    return {name: accuracy(model, task, data.split(name), placement) for name in SELECTION_SPLITS}


def selection_gap(accuracies: dict, targets: dict) -> float:
    """The reference's yardstick at one point: (|retain acc - target| + |forget acc - target|) / 2."""
    return float(np.mean([abs(accuracies[name] - targets[name]) for name in SELECTION_SPLITS]))


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


def bend_optimizer(tensors: list, params) -> torch.optim.Optimizer:
    """``params.optimizer``: "sgd", the reference's SGD with momentum at a constant lr (train.py:162-173,
    ``--milestones=11`` past its 10 epochs), or "adamw" (what TOFU's language models use here)."""
    if params.optimizer == "sgd":
        return torch.optim.SGD(tensors, lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay)
    return adamw(tensors, params.lr, params.weight_decay)


def fit_pathway_bend(model: nn.Module, theta_u: dict, task, data, params, *, seed: int,
                     placement: Placement | None = None) -> tuple[dict, dict]:
    """Train the midpoint of the curve original -> ``theta_u`` (``model`` holds the original).

    Each step: one t ~ U(0, 1), a batch mixing Df and the retain subset in proportion,
    loss L(Dr) - beta * L(Df) at phi(t), beta from ``BetaRule`` on this batch's forget and
    retain accuracy against the original's ``baselines`` (on the validation split and on Dr).
    Only the masked tensors of the midpoint require gradients; the rest stay on the chord.
    With several workers, beta is decided on each worker's shard. Returns the midpoint (on
    the device) and a log, the baselines included (they are also t*'s targets).

    Departures from the reference, kept on purpose:
    - the mask is applied. As released, the reference's ``dynamic`` mode trains every tensor of the
      bend (train.py:150-157, the freezing line is commented out) and its fixed-beta ``curve`` mode
      never updates the bend; the paper describes a masked bend, which is what this trains;
    - a batch mixes Df and the retain subset in fixed proportion (an epoch is one pass over Df),
      where the reference shuffles Df and the subset together (train.py:197-206): the same steps
      per epoch on average, without the batches that hold no forget example (the reference's
      loss is NaN there);
    - the forget and retain accuracies beta is decided on come from two forwards (BatchNorm
      statistics per part), not one forward over the mixed batch (unlearn.py:78-96), and no
      data augmentation is applied.
    """
    placement = placement or Placement()
    names = curve_parameters(model)
    weights = dict(model.named_parameters())
    theta_o = {n: weights[n].detach().clone() for n in names}
    theta_u = placement.tensors({n: theta_u[n].detach().to(placement.dtype) for n in names})
    generator, _ = generators(seed, placement)
    forget, retain = data.split("forget"), subset(data.split("retain"), params.retain_ratio, generator)

    targets = baselines(model, task, data, placement)
    sizes = {n: weights[n].numel() for n in names}
    scores = [tensor_scores(model, task, split, placement, params.batch_size)
              for split in (data.split("retain"), forget)]
    selected = select_tensors(*scores, sizes, params.k, params.k_r)
    bend = {n: b.requires_grad_(n in selected) for n, b in initial_bend(theta_o, theta_u).items()}
    opt = bend_optimizer([bend[n] for n in selected], params)

    forget_size, retain_size = mixed_batch_sizes(params.batch_size, batch_length(forget), batch_length(retain))
    loop = dataclasses.replace(params, steps=0, batch_size=forget_size, retain_batch_size=retain_size)
    rule, betas = BetaRule(params.beta_low, params.beta_high), []

    def loss_of(forget_batch, retain_batch, t):
        forward = curve_forward(model, [theta_o, bend, theta_u], t)
        forget_losses, forget_acc = task.losses_and_accuracy(forward, forget_batch)
        retain_losses, retain_acc = task.losses_and_accuracy(forward, retain_batch)
        betas.append(rule(forget_acc, retain_acc, targets["forget"], targets["retain"]))
        return retain_losses.mean() - betas[-1] * forget_losses.mean(), {}

    model.train()
    batches = unlearning_batches(ReplacedSplits(data, {"retain": retain}), loop, generator, uses_retain=True)
    # one t ~ U(0, 1) per step, the same on every worker
    log = {**run_steps(loss_of, batches, opt, placement, draw=lambda: float(torch.rand((), generator=generator))),
           "forget_baseline": targets["forget"], "retain_baseline": targets["retain"],
           "selected_tensors": selected, "trained_fraction": sum(sizes[n] for n in selected) / sum(sizes.values()),
           "mean_beta": float(np.mean(betas)) if betas else 0.0,
           "beta_zero_fraction": float(np.mean([b == 0 for b in betas])) if betas else 0.0}
    return {n: b.detach() for n, b in bend.items()}, log
