"""GA, gradient ascent on the forget set (Golatkar et al. 2020; Jang et al. 2023)."""
from __future__ import annotations

from dataclasses import dataclass

from mcu_ray.methods.common import Method, UnlearnParams


@dataclass(frozen=True)
class Params(UnlearnParams):
    pass


def loss(ctx, forget, retain, params: Params):
    forget_loss = ctx.losses(forget)  # (b,)
    # CL weighs each example by its positive loss, then the mean is ascended (MU-Bench grad_ascent.py)
    return -ctx.reduce_forget(forget_loss), {"forget_loss": forget_loss.mean().detach()}


METHOD = Method(name="ga", Params=Params, loss=loss, families=("classification", "tofu"))
