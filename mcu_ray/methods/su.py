"""SU, SalUn (Fan et al. 2024): random labelling that only moves salient weights.

The saliency mask keeps the top ``mask_ratio`` of weights by |d forget loss / d theta|
(one global threshold over all parameters, gradient taken on the whole forget set
with the original model); then RL trains with every other weight's gradient zeroed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from mcu_ray.errors import SpecError
from mcu_ray.methods import rl
from mcu_ray.methods.common import Method, UnlearnParams, split_gradients


@dataclass(frozen=True)
class Params(UnlearnParams):
    mask_ratio: float = 0.5  # fraction of weights that may change (SalUn's default threshold)

    def check(self, path: str) -> None:
        super().check(path)
        if not 0 < self.mask_ratio <= 1:
            raise SpecError(f"{path}.mask_ratio", self.mask_ratio, "expected a fraction in (0, 1]")


def saliency_mask(model: torch.nn.Module, task, data, params: Params, placement) -> dict[str, torch.Tensor]:
    """{parameter name: 1.0 where salient, else 0.0}, from the forget-loss gradient of ``model``."""
    model = copy.deepcopy(model).eval()  # a differentiable copy; BatchNorm statistics stay as they are
    for p in model.parameters():
        p.requires_grad_(True)
    grads = {name: g.abs() for name, g in split_gradients(model, task, data.split("forget"), placement,
                                                                     reduction="sum").items()}
    flat = torch.cat([g.flatten() for g in grads.values()])
    keep = max(1, int(round(params.mask_ratio * flat.numel())))
    threshold = torch.topk(flat, keep).values.min()
    return {name: (g >= threshold).to(g.dtype) for name, g in grads.items()}


METHOD = Method(name="su", Params=Params, loss=rl.loss, uses_retain=True, uses_original=True, grad_mask=saliency_mask)
