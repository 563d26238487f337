"""The contract every task implements: its data, its model, its losses, its metrics.

The training loops, methods, pathway unlearning, evaluation, planner and report use a
task only through these members; ``ClassificationTask`` (digits, MU-Bench) and
``TofuTask`` implement them. A new task is one module with an object satisfying
``Task``, and one line in ``mcu_ray.tasks.TASKS``.

Devices: a task never decides one. ``new_model`` builds on the CPU (so a seed gives the
same weights everywhere) and moves the model to the ``Placement``'s device;
``eval_context`` and ``evaluate`` move each batch there, inside the placement's
autocast. Split tensors stay on the CPU until a batch is taken from them.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

from mcu_ray.curves import load_point
from mcu_ray.placement import Placement


@runtime_checkable
class Splits(Protocol):
    """One (task options, forget ratio) loaded: what loops and metrics read."""

    def split(self, name: str) -> dict:
        """A split as a batch dict on the CPU: ``forget``, ``retain``, ``train`` (D), the
        task's ``holdout_split``; text rows padded to the split's longest row."""


@runtime_checkable
class Task(Protocol):
    name: str  # registry key
    family: str  # "classification" | "tofu": which methods apply (Method.families)
    Options: type  # frozen dataclass of the task's options, validated from the sweep file
    default_ratios: tuple  # forget ratios (percent) when a sweep names none
    default_hparams: dict  # method -> {knob: value}: the task's tuned defaults
    metric_directions: dict  # metric -> +1 (higher is better after unlearning) or -1
    figure_metrics: tuple  # metrics drawn along t in the report
    retain_loss: str  # the metric that is L(Dr) in the MCU retain condition
    forget_loss: str  # the metric that is L(Df) in the MCU forget condition
    holdout_split: str  # data the model never saw: what Df should look like after unlearning (pathway)
    selection_metrics: tuple  # metrics whose mean gap to the retrained model picks pathway's t*

    # ------------------------------------------------------------------ options
    def normalize_options(self, options: Any) -> Any:
        """Options as any worker reads them (local paths made absolute)."""

    def check_options(self, options: Any, path: str, base_dir) -> None:
        """Raise SpecError (field, value, what is allowed) for options that cannot run."""

    def check_ratios(self, ratios, options: dict, path: str) -> None:
        """Raise SpecError for forget ratios this task's data cannot provide."""

    # ------------------------------------------------------------------ data and model
    def load(self, options: dict, ratio: float) -> Splits:
        """The splits of one forget ratio (CPU tensors)."""

    def new_model(self, options: dict, seed: int, placement: Placement | None = None) -> nn.Module:
        """A model initialised from ``seed`` on the CPU, then moved to the placement's device
        and weight dtype (CPU float32 when no placement is given)."""

    # ------------------------------------------------------------------ losses (what methods use)
    def example_losses(self, forward: Callable, batch: dict, reduction: str = "mean") -> torch.Tensor:
        """Per-example loss of ``forward`` on a batch on its device, shape (batch,): cross-entropy;
        for an LM the answer-token NLL, averaged ("mean") or summed ("sum") over tokens."""

    def losses_and_accuracy(self, forward: Callable, batch: dict) -> tuple[torch.Tensor, float]:
        """Per-example losses (batch,) and the fraction predicted right, from one forward pass."""

    def relabel(self, batch: dict, data: Splits, generator: torch.Generator) -> dict:
        """The forget batch with wrong targets (RL, SalUn); returned on the CPU."""

    # ------------------------------------------------------------------ metrics
    def eval_context(self, options: dict, data: Splits, reference_state: dict | None,
                     placement: Placement) -> Any:
        """What metrics compare against, computed once per process: the retrained model's
        statistics (TOFU), a random network's predictions (ZRF)."""

    def evaluate(self, model: nn.Module, options: dict, data: Splits, context: Any,
                 placement: Placement) -> dict:
        """Every metric of ``model`` (on the placement's device) as {name: float}."""

    def evaluate_curve(self, model: nn.Module, options: dict, data: Splits, context: Any, placement: Placement,
                       control_points: list[dict], ts: list[float]) -> list[dict]:
        """{"t": t, **metrics} of phi(t) for each t: ``evaluate_one_by_one``, or several points
        per pass where the task can (classifiers: ``tasks.vectorized``). ``model`` is scratch space."""


@runtime_checkable
class ClassifierTask(Task, Protocol):
    """A task of the classification family also exposes its class logits (Bad Teaching's KL)."""

    def logits(self, forward: Callable, batch: dict) -> torch.Tensor:
        """Class logits of ``forward`` on a batch, shape (batch, classes)."""


def evaluate_one_by_one(task: Task, model: nn.Module, options: dict, data: Splits, context: Any,
                        placement: Placement, control_points: list[dict], ts: list[float]) -> list[dict]:
    """Each phi(t) loaded into ``model`` in turn and evaluated (large models: one copy in memory)."""
    rows = []
    for t in ts:
        load_point(model, control_points, t)
        rows.append({"t": t, **task.evaluate(model, options, data, context, placement)})
    return rows
