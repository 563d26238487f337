"""Curves between two unlearned models, as arithmetic over parameter dicts.

A curve of n+1 control points is phi(t) = sum_k B_{k,n}(t) theta_k with Bernstein
coefficients B; n=1 is the straight line, n=2 the quadratic Bezier curve of the
paper (Garipov et al. 2018). A forward pass at phi(t) goes through
``torch.func.functional_call``, so any nn.Module (Hugging Face models included)
works unchanged, and only the bends are trainable.
"""
from __future__ import annotations

from math import comb

import torch
from torch import nn
from torch.func import functional_call

Params = dict  # name -> tensor


def bezier_coefficients(t: float | torch.Tensor, n: int) -> list:
    """Bernstein basis B_{k,n}(t) = C(n,k) t^k (1-t)^(n-k), k = 0..n."""
    return [comb(n, k) * t ** k * (1 - t) ** (n - k) for k in range(n + 1)]


def point_on_curve(control_points: list[Params], t: float | torch.Tensor) -> Params:
    """phi(t) for control points [theta_0, bends..., theta_n] over the same names."""
    coeffs = bezier_coefficients(t, len(control_points) - 1)
    return {name: sum(c * cp[name] for c, cp in zip(coeffs, control_points)) for name in control_points[0]}


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


def load_state(model: nn.Module, state: dict) -> nn.Module:
    """Load an artifact's weights; only frozen parameters may be absent from them."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    trainable = set(curve_parameters(model))
    if unexpected or trainable & set(missing):
        raise ValueError(f"weights do not fit the model: missing {sorted(trainable & set(missing))[:3]}, "
                         f"unexpected {sorted(unexpected)[:3]}")
    return model


def initial_bend(theta_1: Params, theta_2: Params) -> Params:
    """The midpoint's start: on the chord, (theta_1 + theta_2) / 2."""
    return {name: (theta_1[name] + theta_2[name]) / 2 for name in theta_1}


def curve_forward(model: nn.Module, control_points: list[Params], t: float | torch.Tensor):
    """A forward function of ``model`` with its parameters set to phi(t)."""
    params_t = point_on_curve(control_points, t)

    def forward(*args, **kwargs):
        return functional_call(model, params_t, args, kwargs)

    return forward


@torch.no_grad()
def load_point(model: nn.Module, control_points: list[Params], t: float) -> nn.Module:
    """Set ``model``'s curve parameters to phi(t), in place and one tensor at a time (a large
    model is never copied whole); tied weights follow their canonical parameter.

    Buffers (BatchNorm statistics) are left as they are: evaluation re-estimates them.
    """
    coeffs = bezier_coefficients(t, len(control_points) - 1)
    params = dict(model.named_parameters())
    for name in control_points[0]:
        params[name].copy_(sum(c * cp[name] for c, cp in zip(coeffs, control_points)))
    return model
