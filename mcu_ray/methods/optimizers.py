"""First-order (FO: AdamW) and second-order (SO: Sophia, as SOUL uses it) optimisers.

SOUL (Jia et al. 2024) unlearns with Sophia (Liu et al. 2023): a diagonal curvature
estimate h clips a momentum step, so flat directions move at most ``lr`` per step and
sharp ones less. Here h is the Gauss-Newton-Bartlett-style estimate g*g of the
minibatch gradient, refreshed every ``update_period`` steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mcu_ray.spec import SpecError

OPTIMIZERS = ("fo", "so")


@dataclass(frozen=True)
class SophiaParams:
    """Sophia's knobs; defaults from SOUL's released configuration."""

    lr: float = 0.0  # 0 = the method's learning rate
    beta1: float = 0.965  # momentum
    beta2: float = 0.99  # curvature moving average
    rho: float = 0.04  # clipping scale of m / h
    weight_decay: float = 0.1  # decoupled
    eps: float = 1e-15
    update_period: int = 10  # steps between curvature refreshes (SOUL's k)

    def check(self, path: str) -> None:
        for key in ("beta1", "beta2"):
            if not 0 <= getattr(self, key) < 1:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected a number in [0, 1)")
        if self.rho <= 0 or self.lr < 0 or self.weight_decay < 0 or self.eps <= 0:
            raise SpecError(path, {"lr": self.lr, "rho": self.rho, "weight_decay": self.weight_decay},
                            "expected rho > 0, eps > 0, lr >= 0 and weight_decay >= 0")
        if self.update_period < 1:
            raise SpecError(f"{path}.update_period", self.update_period, "expected an integer >= 1")


class Sophia(torch.optim.Optimizer):
    """theta <- theta - lr * sign(m) * min(|m| / (rho * h + eps), 1), with decoupled weight decay."""

    def __init__(self, params, lr: float, beta1: float = 0.965, beta2: float = 0.99, rho: float = 0.04,
                 weight_decay: float = 0.1, eps: float = 1e-15, update_period: int = 10):
        defaults = dict(lr=lr, beta1=beta1, beta2=beta2, rho=rho, weight_decay=weight_decay, eps=eps,
                        update_period=update_period)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["h"] = torch.zeros_like(p)
                m, h = state["m"], state["h"]
                if state["step"] % group["update_period"] == 0:  # refresh the curvature estimate
                    h.mul_(group["beta2"]).addcmul_(grad, grad, value=1 - group["beta2"])
                state["step"] += 1
                p.mul_(1 - group["lr"] * group["weight_decay"])
                m.mul_(group["beta1"]).add_(grad, alpha=1 - group["beta1"])
                ratio = (m.abs() / (group["rho"] * h + group["eps"])).clamp(max=1.0)
                p.addcmul_(m.sign(), ratio, value=-group["lr"])


def adamw(params, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; on a GPU its fused kernel (one launch for every tensor: the same update, faster)."""
    params = list(params)
    fused = bool(params) and all(p.is_cuda for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def make_optimizer(kind: str, params, lr: float, weight_decay: float, sophia: dict | None = None):
    """AdamW for FO; Sophia for SO, with ``sophia`` (a SophiaParams dict; lr 0 = ``lr``)."""
    if kind == "fo":
        return adamw(params, lr, weight_decay)
    if kind == "so":
        knobs = SophiaParams(**(sophia or {}))
        return Sophia(params, lr=knobs.lr or lr, beta1=knobs.beta1, beta2=knobs.beta2, rho=knobs.rho,
                      weight_decay=knobs.weight_decay, eps=knobs.eps, update_period=knobs.update_period)
    raise ValueError(f"optimizer {kind!r} is not one of {OPTIMIZERS}")
