"""Pieces every unlearning method shares: its hyper-parameters and what its loss sees.

A method is a pure loss over a forget batch and a retain batch; the training loop
(``mcu_ray.train``) owns data order, optimiser and curriculum. The same loss trains
an endpoint and, through the curve's forward, the Bezier midpoint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from mcu_ray.batches import iterate_batches, to_device, trim_padding
from mcu_ray.errors import SpecError


@dataclass(frozen=True)
class UnlearnParams:
    """Loop knobs common to every method (a method's Params extends this)."""

    epochs: int = 5  # passes over the forget set
    steps: int = 0  # > 0: exactly this many steps instead (the same budget at every forget ratio)
    lr: float = 1e-3
    batch_size: int = 16  # forget examples per step
    retain_batch_size: int = 32  # retain examples per step (methods that use Dr)
    weight_decay: float = 0.0

    def check(self, path: str) -> None:
        if self.steps < 0:
            raise SpecError(f"{path}.steps", self.steps, "expected 0 (use epochs) or a positive step count")
        for key in ("epochs", "batch_size", "retain_batch_size"):
            if getattr(self, key) < 1:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected an integer >= 1")
        if self.lr <= 0:
            raise SpecError(f"{path}.lr", self.lr, "expected a positive learning rate")
        if self.weight_decay < 0:
            raise SpecError(f"{path}.weight_decay", self.weight_decay, "expected a non-negative number")


@dataclass
class LossContext:
    """What a method's loss may use: the model being trained, the frozen original, the task."""

    task: Any  # the task: knows how its model is called and how a loss is taken
    data: Any  # the task's splits (RL draws replacement targets from them)
    forward: Callable  # the model being trained (an endpoint, or the curve at this step's t)
    generator: torch.Generator  # the loop's seeded randomness
    original_forward: Callable | None = None  # the frozen original model (NPO; BT's competent teacher)
    random_forward: Callable | None = None  # a frozen randomly initialised model (BT's incompetent teacher)
    reduce_forget: Callable = torch.mean  # per-example positive forget losses -> scalar (CL weighs them)

    def losses(self, batch: dict) -> torch.Tensor:
        """Per-example loss of the model being trained, shape (batch,) (token-mean for LMs)."""
        return self.task.example_losses(self.forward, batch)

    def sequence_nll(self, batch: dict, original: bool = False) -> torch.Tensor:
        """Per-example negative log-likelihood summed over target tokens, shape (batch,)."""
        if not original:
            return self.task.example_losses(self.forward, batch, reduction="sum")
        with torch.no_grad():
            return self.task.example_losses(self.original_forward, batch, reduction="sum")

    def logits(self, forward: Callable, batch: dict) -> torch.Tensor:
        """Class logits of ``forward`` on a batch, shape (batch, classes)."""
        return self.task.logits(forward, batch)

    def relabel(self, batch: dict) -> dict:
        """The batch with wrong targets (a random other class; a random retain answer), on the batch's device."""
        return to_device(self.task.relabel(batch, self.data, self.generator), next(iter(batch.values())).device)


@dataclass(frozen=True)
class Method:
    name: str
    Params: type  # a dataclass extending UnlearnParams
    loss: Callable | None  # (ctx, forget_batch, retain_batch, params) -> (loss, {name: scalar tensor})
    families: tuple = ("classification",)  # task families it applies to
    uses_retain: bool | Callable = False  # whether the loop draws a retain batch each step (or: params -> bool)
    uses_original: bool = False  # whether the loss needs the frozen original model
    uses_random_teacher: bool = False  # whether the loss needs a frozen random model
    grad_mask: Callable | None = None  # (original model, task, data, params, placement) -> {name: 0/1 tensor}
    source: str = ""  # pathway unlearning: the method whose endpoint its curve runs to (no loss of its own)

    def draws_retain(self, params) -> bool:
        """Whether the loop draws retain batches for this method with these knobs."""
        return self.uses_retain(params) if callable(self.uses_retain) else self.uses_retain


def split_gradients(model: torch.nn.Module, task, split: dict, placement, batch_size: int = 256,
                    reduction: str = "mean") -> dict[str, torch.Tensor]:
    """The gradient of the per-example loss summed over ``split`` (in minibatches on the
    placement's device), per parameter that gets one; BatchNorm uses the model's own
    statistics, and ``.grad`` is left cleared."""
    model.eval()
    model.zero_grad(set_to_none=True)
    for batch in iterate_batches(split, batch_size):
        with placement.autocast():
            losses = task.example_losses(model, placement.batch(trim_padding(batch)), reduction=reduction)
        losses.float().sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads
