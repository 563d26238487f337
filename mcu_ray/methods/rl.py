"""RL, random labelling (Golatkar et al. 2020; SalUn's RL baseline).

The forget examples get random wrong targets (classification: a random other class;
TOFU: the answer of a random retain question) and are trained together with retain data, so the model unlearns Df while Dr
keeps it useful.
"""
from __future__ import annotations

from dataclasses import dataclass

from mcu_ray.methods.common import Method, UnlearnParams


@dataclass(frozen=True)
class Params(UnlearnParams):
    pass


def loss(ctx, forget, retain, params: Params):
    relabelled, retained = ctx.losses(ctx.relabel(forget)), ctx.losses(retain)  # (b_f,), (b_r,)
    # the mean over forget and retain examples together; CL weighs the forget part
    n_f, n_r = len(relabelled), len(retained)
    total = (n_f * ctx.reduce_forget(relabelled) + retained.sum()) / (n_f + n_r)
    return total, {"relabelled_loss": relabelled.mean().detach(), "retain_loss": retained.mean().detach()}


METHOD = Method(name="rl", Params=Params, loss=loss, families=("classification", "tofu"), uses_retain=True)
