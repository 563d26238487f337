"""NPO, negative preference optimisation (Zhang et al. 2024), with an optional retain term.

The forget answers are treated as "losing" responses against the frozen original
model: L_f = -(2/beta) E log sigmoid(beta (nll_theta - nll_ref)), with nll summed over
the answer tokens (open-unlearning's compute_dpo_loss with no winning response).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from mcu_ray.methods.common import Method, UnlearnParams


@dataclass(frozen=True)
class Params(UnlearnParams):
    beta: float = 0.1  # NPO's inverse temperature (paper default)
    gamma: float = 1.0  # weight of the forget term
    alpha: float = 1.0  # weight of the retain NLL term; 0 = plain NPO


def npo_forget_losses(nll, nll_reference, beta: float):
    """Per-example -(2/beta) log sigmoid(beta (nll - nll_ref)); shapes (batch,)."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll - nll_reference))


def loss(ctx, forget, retain, params: Params):
    forget_losses = npo_forget_losses(ctx.sequence_nll(forget), ctx.sequence_nll(forget, reference=True), params.beta)
    total = ctx.reduce_forget(params.gamma * forget_losses)
    logs = {"npo_loss": forget_losses.mean().detach()}
    if params.alpha:
        retain_loss = ctx.losses(retain).mean()
        total = total + params.alpha * retain_loss
        logs["retain_loss"] = retain_loss.detach()
    return total, logs


METHOD = Method(name="npo", Params=Params, loss=loss, families=("classification", "tofu"), uses_retain=True,
                uses_reference=True)
