"""Curves between two unlearned models, as arithmetic over parameter dicts.

A curve of n+1 control points is phi(t) = sum_k c_k(t) theta_k: a Bezier curve with
Bernstein coefficients, or a polygonal chain through the points (Garipov et al. 2018;
the MCU authors' ``curves.py`` has both); n=1 is the straight line, n=2 the quadratic
Bezier curve of the paper. A forward pass at phi(t) goes through
``torch.func.functional_call``, so any nn.Module (Hugging Face models included)
works unchanged, and only the bends are trainable.

LoRA adapters are combined in the space of the weights they add, scale * B @ A, not
factor by factor (sum_k c_k B_k sum_k c_k A_k is not the curve the endpoints span):
sum_k c_k B_k A_k = [B_0 ... B_n] @ [c_0 A_0; ...; c_n A_n], so a point on the curve is
an exact adapter of rank (n+1) r, built by concatenation, never a full d x d matrix.
"""
from __future__ import annotations

from math import comb

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

Params = dict  # name -> tensor
LORA_A, LORA_B = ".lora_A.", ".lora_B."  # peft's adapter factor names: <module>.lora_A.<adapter>.weight


def bezier_coefficients(t: float | torch.Tensor, n: int) -> list:
    """Bernstein basis B_{k,n}(t) = C(n,k) t^k (1-t)^(n-k), k = 0..n."""
    return [comb(n, k) * t ** k * (1 - t) ** (n - k) for k in range(n + 1)]


def polychain_coefficients(t: float | np.ndarray, n: int) -> list:
    """Hat functions max(0, 1 - |n t - k|), k = 0..n: the chain of straight segments through the
    points (Garipov's PolyChain, MU-Bench ``curves.py:45-46``)."""
    return [np.maximum(0.0, 1.0 - np.abs(n * np.asarray(t, float) - k)) * 1.0 for k in range(n + 1)]


def coefficients(t: float, n: int, kind: str = "bezier") -> list:
    """The weights of the n+1 control points at t."""
    if kind == "polychain":
        return [float(c) for c in polychain_coefficients(t, n)]
    return bezier_coefficients(t, n)


def lora_factor(name: str, names) -> str:
    """"A" or "B" for the two factors of a LoRA adapter whose partner is also in ``names``; "" otherwise."""
    if LORA_A in name and name.replace(LORA_A, LORA_B) in names:
        return "A"
    if LORA_B in name and name.replace(LORA_B, LORA_A) in names:
        return "B"
    return ""


def combine(name: str, points: list[Params], coeffs: list) -> torch.Tensor:
    """sum_k coeffs[k] * points[k][name]; a LoRA factor combined in B @ A space (A factors
    scaled and stacked along the rank, B factors stacked beside them)."""
    factor = lora_factor(name, points[0])
    if factor == "A":
        return torch.cat([c * p[name] for c, p in zip(coeffs, points)], dim=0)  # (sum of ranks, in)
    if factor == "B":
        return torch.cat([p[name] for p in points], dim=1)  # (out, sum of ranks)
    return sum(c * p[name] for c, p in zip(coeffs, points))


def combination(points: list[Params], coeffs: list) -> Params:
    """sum_k coeffs[k] * points[k] over the same names (``combine`` per tensor)."""
    return {name: combine(name, points, coeffs) for name in points[0]}


def point_on_curve(control_points: list[Params], t: float | torch.Tensor, kind: str = "bezier") -> Params:
    """phi(t) for control points [theta_0, bends..., theta_n] over the same names."""
    if kind == "polychain":
        return combination(control_points, coefficients(float(t), len(control_points) - 1, kind))
    return combination(control_points, bezier_coefficients(t, len(control_points) - 1))


def inner(x: Params, y: Params) -> torch.Tensor:
    """<x, y> summed over every tensor (float64, on the tensors' device): the Euclidean inner
    product of the flattened parameters; for a LoRA adapter that of the added weights B_x A_x and
    B_y A_y, through rank-sized products: tr(A_x^T B_x^T B_y A_y) = sum((B_x^T B_y) * (A_x A_y^T))
    (LoRA's constant scale left out)."""
    terms = []
    for name in x:
        factor = lora_factor(name, x)
        if factor == "A":
            b = name.replace(LORA_A, LORA_B)
            terms.append(((x[b].T.double() @ y[b].double()) * (x[name].double() @ y[name].T.double())).sum())
        elif not factor:
            terms.append((x[name].double() * y[name].double()).sum())  # a B factor counts with its A
    return torch.stack(terms).sum()


def speed_gram(control_points: list[Params]) -> np.ndarray:
    """G[j, k] = <d_j, d_k> for the control-point differences d_k = theta_{k+1} - theta_k.

    phi'(t) = n sum_k B_{k,n-1}(t) d_k, so ||phi'(t)||^2 = n^2 b(t)^T G b(t): the curve's speed
    at any t from n^2 inner products, never materialising phi' (one device sync for all).
    """
    with torch.no_grad():
        diffs = [combination([a, b], [-1.0, 1.0]) for a, b in zip(control_points, control_points[1:])]
        return torch.stack([torch.stack([inner(dj, dk) for dk in diffs]) for dj in diffs]).cpu().numpy()


def derivative_basis(ts: np.ndarray, n: int, kind: str = "bezier") -> np.ndarray:
    """b(t) with phi'(t) = n sum_k b_k(t) d_k, shape (len(ts), n): Bernstein B_{k,n-1} for a Bezier
    curve; for a polygonal chain the indicator of the segment t lies on."""
    ts = np.asarray(ts, float)
    if kind == "polychain":
        return np.eye(n)[np.clip((ts * n).astype(int), 0, n - 1)]
    return np.stack(bezier_coefficients(ts, n - 1), axis=-1)


def speed(gram: np.ndarray, ts: np.ndarray, kind: str = "bezier") -> np.ndarray:
    """||phi'(t)|| at each of ``ts`` from ``speed_gram``'s matrix."""
    n = len(gram)
    basis = derivative_basis(ts, n, kind)
    return n * np.sqrt(np.maximum(np.einsum("ti,ij,tj->t", basis, gram, basis), 0.0))


def arc_length_density(control_points: list[Params], ts: np.ndarray, kind: str = "bezier",
                       resolution: int = 1025) -> np.ndarray:
    """q(t) = ||phi'(t)|| / int_0^1 ||phi'||: the paper's length weighting (Cheng & Amiri 2025,
    Appendix 9, Eqs. 5-8) at ``ts`` (the integral by the trapezoid rule on ``resolution`` points).
    A curve of zero length (equal endpoints) weighs every t alike."""
    gram, grid = speed_gram(control_points), np.linspace(0.0, 1.0, resolution)
    length = np.trapezoid(speed(gram, grid, kind), grid)
    v = speed(gram, np.asarray(ts, float), kind)
    return v / length if length > 0 else np.ones_like(v)


def arc_length_sampler(control_points: list[Params], generator: torch.Generator, kind: str = "bezier",
                       resolution: int = 1025):
    """t ~ q(t) by inverse transform over ``resolution`` grid points: uniform in arc length.
    Drawing t from q and stepping on L(phi(t)) is the Monte-Carlo estimate of int L(phi(t)) q(t) dt
    with q held fixed over the step (recomputed as the bend moves)."""
    grid = np.linspace(0.0, 1.0, resolution)
    density = arc_length_density(control_points, grid, kind)
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    return float(np.interp(float(torch.rand((), generator=generator)), cdf, grid))


def curve_length(control_points: list[Params], kind: str = "bezier", resolution: int = 1025) -> float:
    """int_0^1 ||phi'(t)|| dt: the curve's length in parameter space (Garipov's eval_curve.py statistic)."""
    grid = np.linspace(0.0, 1.0, resolution)
    return float(np.trapezoid(speed(speed_gram(control_points), grid, kind), grid))


def curve_parameters(model: nn.Module) -> list[str]:
    """Names of the tensors a curve interpolates: the trainable parameters.

    With LoRA only the adapters train, so curves move in adapter space over a frozen
    base. Buffers (BatchNorm running statistics) are not on the curve; they are
    re-estimated on data at every evaluated point.
    """
    return [name for name, p in model.named_parameters() if p.requires_grad]


def savable_state(model: nn.Module) -> dict:
    """What an artifact stores: the full state dict, or, when part of the model is frozen
    (LoRA adapters over a base rebuilt identically from the options), only the
    trainable parameters and the buffers."""
    frozen = {name for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    if not frozen:
        return model.state_dict()
    return {name: t for name, t in model.state_dict().items() if name not in frozen}


def _fit_shapes(model: nn.Module, state: dict) -> None:
    """Give parameters the shapes of ``state`` where a curve point left them a larger rank (LoRA)."""
    params = dict(model.named_parameters())
    for name, value in state.items():
        if name in params and params[name].shape != value.shape and lora_factor(name, params):
            params[name].data = torch.empty(value.shape, dtype=params[name].dtype, device=params[name].device)


def load_state(model: nn.Module, state: dict) -> nn.Module:
    """Load an artifact's weights; only frozen parameters may be absent from them."""
    _fit_shapes(model, state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    trainable = set(curve_parameters(model))
    if unexpected or trainable & set(missing):
        raise ValueError(f"weights do not fit the model: missing {sorted(trainable & set(missing))[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    return model


def chord_point(theta_1: Params, theta_2: Params, s: float) -> Params:
    """(1 - s) theta_1 + s theta_2. A LoRA point is the adapter of rank 2r adding that weight,
    [sqrt(1-s) B_1, sqrt(s) B_2] @ [sqrt(1-s) A_1; sqrt(s) A_2] (the weight split evenly between factors)."""
    roots = [(1 - s) ** 0.5, s ** 0.5]
    point = {}
    for name in theta_1:
        factor = lora_factor(name, theta_1)
        if factor:
            point[name] = torch.cat([r * p[name] for r, p in zip(roots, (theta_1, theta_2))],
                                    dim=0 if factor == "A" else 1)
        else:
            point[name] = (1 - s) * theta_1[name] + s * theta_2[name]
    return point


def initial_bends(theta_1: Params, theta_2: Params, k: int) -> list[Params]:
    """k bends evenly spaced on the chord, at s = j / (k + 1): the Bezier curve (and the chain) they
    make with the endpoints is then the straight line itself (Garipov's ``init_linear``)."""
    return [chord_point(theta_1, theta_2, j / (k + 1)) for j in range(1, k + 1)]


def initial_bend(theta_1: Params, theta_2: Params) -> Params:
    """One bend on the chord's midpoint, (theta_1 + theta_2) / 2."""
    return chord_point(theta_1, theta_2, 0.5)


def curve_forward(model: nn.Module, control_points: list[Params], t: float | torch.Tensor, kind: str = "bezier"):
    """A forward function of ``model`` with its parameters set to phi(t)."""
    params_t = point_on_curve(control_points, t, kind)

    def forward(*args, **kwargs):
        return functional_call(model, params_t, args, kwargs)

    return forward


@torch.no_grad()
def load_point(model: nn.Module, control_points: list[Params], t: float, kind: str = "bezier") -> nn.Module:
    """Set ``model``'s curve parameters to phi(t), in place and one tensor at a time (a large
    model is never copied whole); tied weights follow their canonical parameter. A LoRA
    factor takes the point's larger rank (``load_state`` gives it back its own).

    Buffers (BatchNorm statistics) are left as they are: evaluation re-estimates them.
    """
    params, coeffs = dict(model.named_parameters()), coefficients(t, len(control_points) - 1, kind)
    for name in control_points[0]:
        value = combine(name, control_points, coeffs)
        if params[name].shape == value.shape:
            params[name].copy_(value)
        elif lora_factor(name, params):  # an adapter of the point's larger rank
            params[name].data = value.to(params[name].dtype).clone()
        else:
            raise ValueError(f"{name}: a control point of shape {tuple(value.shape)} for a parameter of shape "
                             f"{tuple(params[name].shape)}")
    return model
