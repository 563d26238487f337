"""First-order (FO) and second-order (SO) optimisers an endpoint can be trained with."""
from __future__ import annotations

import torch

OPTIMIZERS = ("fo",)  # "so" (Sophia, as SOUL uses it) arrives with the full grid


def make_optimizer(kind: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if kind == "fo":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise NotImplementedError(f"optimizer {kind!r} is not implemented; available: {', '.join(OPTIMIZERS)}")
