"""CL, curriculum learning for unlearning: which forget examples count, and when.

- ``superloss`` (default): the MCU authors' SuperLoss (CLU-UML/MU-Bench ``superloss.py``,
  ``trainer/base.py:46,82-88``, ``trainer/grad_ascent.py:27-36``; Castells et al. 2020).
  Each forget example's *positive* loss l_i (the task loss for GA/GD, the method's own
  per-example loss for RL, NPO, BT) gets the confidence
  sigma_i = exp(-W(max(-2/e, (l_i - tau) / lambda) / 2)), detached, and the forget term is
  mean_i sigma_i l_i; an ascent method negates that mean. Examples the model still fits
  (low loss) weigh more: this is what is forgotten first. tau is the authors' ``mode='avg'``:
  the first batch's mean loss, then sum of all past l / sum of all past sigma.
- ``easy_to_hard`` / ``hard_to_easy``: forget examples visited in the order of the
  original model's per-example loss (low = easy), unweighted.

Deviation: the authors' one SuperLoss object also weighs retain terms (GD, BT) and shares
its tau with them; here only the forget term is weighed, with a tau of its own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import lambertw

from mcu_ray.errors import SpecError

KINDS = ("superloss", "easy_to_hard", "hard_to_easy")


@dataclass(frozen=True)
class CurriculumParams:
    kind: str = "superloss"
    lam: float = 10.0  # SuperLoss lambda (the authors' code: 10)

    def check(self, path: str) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"{path}.kind", self.kind, f"allowed: {', '.join(KINDS)}")
        if self.lam <= 0:
            raise SpecError(f"{path}.lam", self.lam, "expected a positive number")


def superloss_confidence(losses: np.ndarray, tau: float, lam: float) -> np.ndarray:
    """sigma* = exp(-W(max(-2/e, (l - tau)/lam) / 2)): the closed-form optimal confidence (the
    authors' code reads the same function off a lookup table in log space)."""
    y = 0.5 * np.maximum(-2 / math.e, (np.asarray(losses, float) - tau) / lam)
    y = np.maximum(y, -1 / math.e + 1e-12)  # W's branch point; rounding below it would give NaN
    return np.exp(-lambertw(y).real)


class SuperLoss:
    """Reduces per-example positive losses to mean_i sigma_i l_i; tau as the authors' ``mode='avg'``."""

    def __init__(self, lam: float):
        self.lam, self.total, self.confidence = lam, 0.0, 0.0  # sums of past losses and past sigmas

    @property
    def tau(self) -> float | None:
        """The next batch's tau: sum of past l / sum of past sigma (None before the first batch)."""
        return self.total / self.confidence if self.confidence else None

    def __call__(self, losses: torch.Tensor) -> torch.Tensor:
        values = losses.detach().float().cpu().numpy()
        tau = float(values.mean()) if self.tau is None else self.tau
        sigma = superloss_confidence(values, tau, self.lam)
        self.total += float(values.sum())
        self.confidence += float(sigma.sum())
        return (torch.as_tensor(sigma, dtype=losses.dtype, device=losses.device) * losses).mean()


def plain_mean(objective: torch.Tensor) -> torch.Tensor:
    return objective.mean()


def forget_reducer(curriculum: str, params: CurriculumParams | None):
    """How a method reduces its per-example positive forget losses: a mean, or SuperLoss."""
    if curriculum == "none":
        return plain_mean
    knobs = params or CurriculumParams()
    return SuperLoss(knobs.lam) if knobs.kind == "superloss" else plain_mean


def forget_order(curriculum: str, params: CurriculumParams | None, original_losses: torch.Tensor | None):
    """A fixed visiting order of the forget set, or None (shuffle every epoch)."""
    if not needs_original_losses(curriculum, params):
        return None
    order = torch.argsort(original_losses)  # easy (low loss) first
    return order if params.kind == "easy_to_hard" else order.flip(0)


def needs_original_losses(curriculum: str, params: CurriculumParams | None) -> bool:
    return curriculum != "none" and (params or CurriculumParams()).kind != "superloss"
