"""NPO, negative preference optimisation (Zhang et al. 2024), as the MCU paper runs it.

The forget answers are treated as "losing" responses against the frozen original
model: L_f = -(2/beta) E log sigmoid(beta (nll_theta - nll_ref)), with nll summed over
the answer tokens (open-unlearning's compute_dpo_loss with no winning response).
The paper's NPO has no retain term (``alpha: 0``, the default); ``alpha > 0`` adds
alpha times the retain NLL: open-unlearning's retain-regularised NPO.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from mcu_ray.errors import SpecError
from mcu_ray.methods.common import Method, UnlearnParams


@dataclass(frozen=True)
class Params(UnlearnParams):
    beta: float = 0.1  # NPO's inverse temperature (paper default)
    gamma: float = 1.0  # weight of the forget term
    alpha: float = 0.0  # weight of the retain NLL term: 0 = the paper's NPO, > 0 = open-unlearning's NPO + retain

    def check(self, path: str) -> None:
        super().check(path)
        if self.beta <= 0:
            raise SpecError(f"{path}.beta", self.beta, "expected a positive inverse temperature")
        if self.alpha < 0:
            raise SpecError(f"{path}.alpha", self.alpha, "expected 0 (the paper's NPO) or a positive retain weight")


def npo_forget_losses(nll, nll_original, beta: float):
    """Per-example -(2/beta) log sigmoid(beta (nll - nll_ref)), the frozen original as NPO's reference
    model pi_ref; shapes (batch,)."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll - nll_original))


def loss(ctx, forget, retain, params: Params):
    forget_losses = npo_forget_losses(ctx.sequence_nll(forget), ctx.sequence_nll(forget, original=True), params.beta)
    total = params.gamma * ctx.reduce_forget(forget_losses)
    logs = {"npo_loss": forget_losses.mean().detach()}
    if params.alpha:
        retain_loss = ctx.losses(retain).mean()
        total = total + params.alpha * retain_loss
        logs["retain_loss"] = retain_loss.detach()
    return total, logs


METHOD = Method(name="npo", Params=Params, loss=loss, families=("classification", "tofu"),
                uses_retain=lambda params: params.alpha > 0, uses_original=True)
