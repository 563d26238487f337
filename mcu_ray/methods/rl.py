"""RL, random labelling (Golatkar et al. 2020; SalUn's RL baseline).

The forget examples get random wrong targets (classification: a random other class)
and are trained together with retain data, so the model unlearns Df while Dr
keeps it useful.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mcu_ray.methods.common import Method, UnlearnParams


@dataclass(frozen=True)
class Params(UnlearnParams):
    pass


def loss(ctx, forget, retain, params: Params):
    relabelled = ctx.relabel(forget, ctx.generator)
    losses = torch.cat([ctx.example_losses(ctx.forward, relabelled),  # (b_f,)
                        ctx.example_losses(ctx.forward, retain)])  # (b_r,)
    return losses.mean(), {"relabelled_loss": losses[: len(forget["y"])].mean().item()}


METHOD = Method(name="rl", Params=Params, loss=loss, uses_retain=True)
