"""Pathway unlearning (Shi & Wang 2025, arXiv 2505.10859): the pieces that decide, not the loop.

A quadratic Bezier curve runs from the original model (t=0) to an unlearned endpoint
(t=1); only the bend trains, and only on a subset of its tensors. This module holds the
three decisions of that method as plain functions, each testable on numbers:
which tensors train (the parameter mask), how hard to push on the forget set (the
adaptive beta), and which point of the curve to export (t*).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    ``metrics``: name -> values at ``ts`` (the evaluated grid); values in between are
    linearly interpolated on ``resolution`` points of [min t, max t].
    """
    ts = np.asarray(ts, float)
    order = np.argsort(ts)
    fine = np.linspace(ts[order][0], ts[order][-1], resolution)
    gaps = np.mean([np.abs(np.interp(fine, ts[order], np.asarray(values, float)[order]) - targets[name])
                    for name, values in metrics.items()], axis=0)
    best = int(np.argmin(gaps))
    return float(fine[best]), float(gaps[best])
