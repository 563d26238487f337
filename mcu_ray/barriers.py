"""Barriers along a curve: how far each metric strays from the chord between endpoints.

For evaluated points t_i and a metric v, the chord is (1 - t_i) v(0) + t_i v(1). The
deviation is signed so that positive is always bad: for a metric where higher is
better, (chord - v); where lower is better, (v - chord). The paper's two conditions
(Eq. 3/4) are the retain loss (barrier) and the forget loss (cliff).

Deviations are stored; verdicts are drawn from them with the tolerances of the moment
(``barrier`` below, ``mcu_ray.tables.verdicts``), so a new tolerance needs no recomputation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MetricSummary:
    metric: str
    deviation: float  # max_i of the signed deviation from the chord (> tol: barrier)
    argmax_t: float  # where that worst deviation sits
    minimum: float
    maximum: float
    mean: float
    start: float  # v(0)
    end: float  # v(1)
    integral: float  # int_0^1 v(t) dt by the trapezoid rule (Garipov et al.'s eval_curve.py statistic)


def chord_deviation(t: np.ndarray, values: np.ndarray, direction: int) -> np.ndarray:
    """Signed deviation from the chord at every t; direction +1 = higher is better."""
    chord = (1 - t) * values[0] + t * values[-1]
    return (chord - values) if direction > 0 else (values - chord)


def summarise_metric(metric: str, t, values, direction: int) -> MetricSummary:
    order = np.argsort(t)
    t, values = np.asarray(t, float)[order], np.asarray(values, float)[order]
    if not (math.isclose(t[0], 0.0) and math.isclose(t[-1], 1.0)):
        raise ValueError(f"a curve summary needs t=0 and t=1 among the points, got {t[0]}..{t[-1]}")
    dev = chord_deviation(t, values, direction)
    worst = int(np.nanargmax(dev)) if np.isfinite(dev).any() else 0
    return MetricSummary(metric, float(dev[worst]), float(t[worst]), float(np.nanmin(values)),
                         float(np.nanmax(values)), float(np.nanmean(values)), float(values[0]), float(values[-1]),
                         float(np.trapezoid(values, t)))


@dataclass(frozen=True)
class CurveVerdict:
    retain_barrier: float  # B_r = max_i [L_r(t_i) - chord]
    forget_barrier: float  # B_f = max_i [chord - L_f(t_i)] (a "cliff")
    mcu: bool  # mode connectivity in unlearning: both within tolerance
    metrics: tuple  # MetricSummary per metric


def verdict_word(retain_barrier: float, forget_barrier: float, tolerance: float) -> str:
    """'MCU', or what breaks it: 'barrier' (the retain side), 'cliff' (the forget side), or both."""
    broken = [word for word, value in (("barrier", retain_barrier), ("cliff", forget_barrier)) if value > tolerance]
    return " + ".join(broken) or "MCU"


def curve_verdict(rows: list[dict], directions: dict, retain_loss: str, forget_loss: str,
                  tolerance: float) -> CurveVerdict:
    """Barriers of one curve from its evaluated rows (each with ``t`` and every metric)."""
    t = np.array([r["t"] for r in rows], float)
    summaries = tuple(summarise_metric(m, t, [r[m] for r in rows], d) for m, d in directions.items())
    by_name = {s.metric: s for s in summaries}
    if directions[retain_loss] >= 0 or directions[forget_loss] <= 0:
        raise ValueError("the retain loss must be lower-is-better and the forget loss higher-is-better")
    b_r, b_f = by_name[retain_loss].deviation, by_name[forget_loss].deviation
    holds = bool(b_r <= tolerance and b_f <= tolerance)
    return CurveVerdict(b_r, b_f, holds, summaries)


def barrier(family: str, tolerance, deviation, minimum, start, end):
    """Whether a curve's metric has a barrier, from its stored summary (numbers or numpy arrays).

    Every family but ``forget_quality``: the worst deviation from the chord exceeds the
    tolerance (in the metric's own units). Forget Quality is a KS-test p-value, whose size
    says nothing beyond which side of the significance level it falls on; its barrier is the
    curve falling below that level (``tolerance``) somewhere while neither endpoint does: the
    path passes through models the test tells apart from the retrained model. NaN gives False.
    """
    if family == "forget_quality":
        return (np.asarray(minimum) < tolerance) & (np.minimum(start, end) >= tolerance)
    return np.asarray(deviation) > tolerance
