"""RL, random labelling (Golatkar et al. 2020; SalUn's RL baseline).

The forget examples get random wrong targets (classification: a random other class;
TOFU: the answer of a random retain question) and are trained together with retain data, so the model unlearns Df while Dr
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
    relabelled = ctx.losses(ctx.relabel(forget))  # (b_f,)
    losses = torch.cat([relabelled, ctx.losses(retain)])  # (b_f + b_r,)
    return losses.mean(), {"relabelled_loss": relabelled.mean().item()}


METHOD = Method(name="rl", Params=Params, loss=loss, families=("classification", "tofu"), uses_retain=True)
