"""CL, curriculum learning for unlearning: which forget examples count, and when.

- ``superloss`` (default; Castells et al. 2020, as the paper's code uses it): each
  forget example's contribution o_i to the objective is weighted by its confidence
  sigma_i = exp(-W(max(-2/e, (o_i - tau) / lambda) / 2)), tau a running mean of o,
  so examples that are easy for the current objective (low o) count more early on.
  (Castells' loss (o - tau) sigma + lambda log^2 sigma has the gradient sigma * do.)
- ``easy_to_hard`` / ``hard_to_easy``: forget examples visited in the order of the
  original model's per-example loss (low = easy), unweighted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import lambertw

from mcu_ray.spec import SpecError

KINDS = ("superloss", "easy_to_hard", "hard_to_easy")


@dataclass(frozen=True)
class CurriculumParams:
    kind: str = "superloss"
    lam: float = 10.0  # SuperLoss lambda (paper's code: 10)
    tau_momentum: float = 0.9  # running mean of the objective, tau

    def check(self, path: str) -> None:
        if self.kind not in KINDS:
            raise SpecError(f"{path}.kind", self.kind, f"allowed: {', '.join(KINDS)}")
        if self.lam <= 0:
            raise SpecError(f"{path}.lam", self.lam, "expected a positive number")
        if not 0 <= self.tau_momentum < 1:
            raise SpecError(f"{path}.tau_momentum", self.tau_momentum, "expected a number in [0, 1)")


def superloss_confidence(objective: np.ndarray, tau: float, lam: float) -> np.ndarray:
    """sigma* = exp(-W(max(-2/e, (o - tau)/lam) / 2)): the closed-form optimal confidence."""
    y = 0.5 * np.maximum(-2 / math.e, (np.asarray(objective, float) - tau) / lam)
    y = np.maximum(y, -1 / math.e + 1e-12)  # W's branch point; rounding below it would give NaN
    return np.exp(-lambertw(y).real)


class SuperLoss:
    """Reduces per-example objectives to a confidence-weighted mean; tau tracks their mean."""

    def __init__(self, lam: float, tau_momentum: float):
        self.lam, self.momentum, self.tau = lam, tau_momentum, None

    def __call__(self, objective: torch.Tensor) -> torch.Tensor:
        values = objective.detach().float().cpu().numpy()
        self.tau = float(values.mean()) if self.tau is None else (
            self.momentum * self.tau + (1 - self.momentum) * float(values.mean()))
        sigma = torch.as_tensor(superloss_confidence(values, self.tau, self.lam), dtype=objective.dtype,
                                device=objective.device)
        return (sigma * objective).mean()


def plain_mean(objective: torch.Tensor) -> torch.Tensor:
    return objective.mean()


def forget_reducer(curriculum: str, params: dict | None):
    """How a method reduces its per-example forget objective: a mean, or SuperLoss."""
    if curriculum == "none":
        return plain_mean
    knobs = CurriculumParams(**(params or {}))
    return SuperLoss(knobs.lam, knobs.tau_momentum) if knobs.kind == "superloss" else plain_mean


def forget_order(curriculum: str, params: dict | None, original_losses: torch.Tensor | None):
    """A fixed visiting order of the forget set, or None (shuffle every epoch)."""
    if curriculum == "none" or CurriculumParams(**(params or {})).kind == "superloss":
        return None
    order = torch.argsort(original_losses)  # easy (low loss) first
    return order if CurriculumParams(**params).kind == "easy_to_hard" else order.flip(0)


def needs_original_losses(curriculum: str, params: dict | None) -> bool:
    return curriculum != "none" and CurriculumParams(**(params or {})).kind != "superloss"
