"""BatchNorm statistics of a point on a curve, re-estimated on data (Garipov et al. 2018)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mcu_ray.batches import iterate_batches
from mcu_ray.placement import Placement


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batch: dict, placement: Placement, logits_fn: Callable,
                        batch_size: int = 256) -> None:
    """Re-estimate BatchNorm running statistics on ``batch`` (Garipov et al. 2018).

    A point on a curve is a new network whose activation statistics match neither
    endpoint, so its stored statistics are replaced by an exact average over data.
    ``logits_fn(model, batch)`` runs the forward pass (a vmapped one updates stacked statistics).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    was_training = model.training
    model.train()
    for minibatch in iterate_batches(batch, batch_size):
        with placement.autocast():
            logits_fn(model, placement.batch(minibatch))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
