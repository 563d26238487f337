"""GD, gradient difference (Liu et al. 2022; "GradDiff" in TOFU): ascend on Df, descend on Dr."""
from __future__ import annotations

from dataclasses import dataclass

from mcu_ray.methods.common import Method, UnlearnParams


@dataclass(frozen=True)
class Params(UnlearnParams):
    gamma: float = 1.0  # weight of the forget term (open-unlearning's gamma)
    alpha: float = 1.0  # weight of the retain term (open-unlearning's alpha)


def loss(ctx, forget, retain, params: Params):
    forget_loss, retain_loss = ctx.losses(forget), ctx.losses(retain).mean()
    total = -params.gamma * ctx.reduce_forget(forget_loss) + params.alpha * retain_loss  # CL weighs the positive loss
    return total, {"forget_loss": forget_loss.mean().detach(), "retain_loss": retain_loss.detach()}


METHOD = Method(name="gd", Params=Params, loss=loss, families=("classification", "tofu"), uses_retain=True)
