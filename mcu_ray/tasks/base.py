"""The contract every task implements: its data, its model, its losses, its metrics.

The training loops, methods, pathway unlearning, evaluation, planner and report use a
task only through these members; ``ClassificationTask`` (digits, MU-Bench) and
``TofuTask`` implement them. A new task is one module with an object satisfying
``Task``, and one line in ``mcu_ray.tasks.TASKS``.

Devices: a task never decides one. ``new_model`` and ``random_model`` build on the CPU
(so a seed gives the same weights everywhere) and move the model to the ``Placement``'s device;
``eval_context`` and ``evaluate`` move each batch there, inside the placement's
autocast. Split tensors stay on the CPU until a batch is taken from them.

Per-example values: ``evaluate`` returns an ``Evaluation``, the {metric: float} dict it always
returned, carrying in ``examples`` the per-example arrays those metrics were computed from in the
same forward passes (open-unlearning's ``value_by_index``); ``mcu_ray.tables`` stores them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import torch
from torch import nn

from mcu_ray.curves import load_point
from mcu_ray.errors import SpecError
from mcu_ray.placement import Placement


def absolute(path: str) -> str:
    """A local path made absolute (Ray workers run in other directories); a hub id as it is."""
    return str(Path(path).expanduser().resolve()) if path.startswith(("/", ".", "~")) else path


def retain_checkpoint(template: str, ratio: float) -> str:
    """The retain-only checkpoint of one forget ratio: ``{retain}`` and ``{ratio}`` in ``template``
    become 100 - ratio and the ratio (TOFU's forget10 pairs with ``..._retain{retain}`` -> retain90)."""
    return template.format(ratio=f"{ratio:g}", retain=f"{100 - ratio:g}")


def check_retain_checkpoint(template: str, epochs: int, path: str) -> None:
    """A checkpoint kept as the original (``epochs: 0``) needs a retain-only checkpoint as the retrained model
    (option ``reference_model``): never the original itself."""
    if epochs == 0 and not template:
        raise SpecError(f"{path}.epochs", epochs, "epochs 0 keeps the checkpoint as the original; the retrained "
                                                  "model then needs reference_model: a retain-only checkpoint")
    try:
        name = retain_checkpoint(template, 10.0)
    except (KeyError, IndexError, ValueError):
        raise SpecError(f"{path}.reference_model", template, "the only placeholders allowed are {retain} and {ratio}")
    if name == template and template.startswith(("/", "./", "../", "~")) and not Path(template).expanduser().exists():
        raise SpecError(f"{path}.reference_model", template, "no such folder (a hub id has the form org/name)")


class Evaluation(dict):
    """One evaluated model: {metric: float}, as ``Task.evaluate`` always returned it, plus ``examples``:
    split -> {column: one value per example of the split, in the split's order}, the per-example values
    the metrics were computed from (column names: ``mcu_ray.tables.EXAMPLE_COLUMNS``; a value a split
    does not have is NaN, or None for text). A curve point's row is one too, its ``t`` among the metrics.

    A dict, so that every reader of metrics reads it as before (JSON, Arrow rows, ``{**metrics}``,
    which drops the examples); only what stores per-example values asks for ``examples``.
    """

    def __init__(self, metrics: dict, examples: dict | None = None):
        super().__init__(metrics)
        self.examples = examples or {}


@runtime_checkable
class Splits(Protocol):
    """One (task options, forget ratio) loaded: what loops and metrics read."""

    def split(self, name: str) -> dict:
        """A split as a batch dict on the CPU: ``forget``, ``retain``, ``train`` (D), the
        task's ``validation_split``; text rows padded to the split's longest row."""


@runtime_checkable
class Task(Protocol):
    name: str  # registry key
    family: str  # "classification" | "tofu": which methods apply (Method.families)
    # frozen dataclass of the task's options, validated from the sweep file. Every ``options`` below is
    # one of these, from the spec to the loops (hashable: processes cache data, tokenizers and models per
    # options); it becomes a mapping only in content keys, meta.json and Tune configs (``plan.item_as_dict``)
    Options: type
    default_ratios: tuple  # forget ratios (percent) when a sweep names none
    default_hparams: dict  # method -> {knob: value}: the task's tuned defaults
    # the metrics ``evaluate`` returns -> +1 (higher is better after unlearning) or -1, each declared in
    # the metric registry (mcu_ray.metrics), which gives the direction: ``metrics.directions(names)``
    metric_directions: dict
    figure_metrics: tuple  # metrics drawn along t in the report
    retain_loss: str  # the metric that is L(Dr) in the MCU retain condition
    forget_loss: str  # the metric that is L(Df) in the MCU forget condition
    # held-out data: never trained on (not in D) and never scored by the report. Pathway unlearning
    # aligns Df's accuracy with the original's accuracy here. Classification: "validation" (carved from
    # the training rows; ``validate`` scores on it too); TOFU: "holdout" (its held-out authors: a fair
    # accuracy target, but not in D, so no utility to measure there: ``validate`` reads rows of Dr instead)
    validation_split: str
    gap_metrics: tuple  # metrics whose mean gap to the retrained model the report shows (pathway unlearning)

    # ------------------------------------------------------------------ options
    def normalize_options(self, options):
        """Options as any worker reads them (local paths made absolute)."""

    def check_options(self, options, path: str, base_dir) -> None:
        """Raise SpecError (field, value, what is allowed) for options that cannot run."""

    def check_ratios(self, ratios, options, path: str) -> None:
        """Raise SpecError for forget ratios this task's data cannot provide."""

    def check_validation(self, options, path: str) -> None:
        """Raise SpecError (field, value, what is allowed) when ``validate`` would find no rows to score
        with these options: hyper-parameter search refuses such a spec when it is parsed."""

    # ------------------------------------------------------------------ data and model
    def load(self, options, ratio: float) -> Splits:
        """The splits of one forget ratio (CPU tensors)."""

    def new_model(self, options, seed: int, placement: Placement | None = None) -> nn.Module:
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

    def sampled_targets(self, forward: Callable, batch: dict, generator: torch.Generator) -> dict:
        """The batch (on its device) with every target drawn from ``forward``'s own predictive distribution
        (Sophia's Gauss-Newton-Bartlett curvature): a class per example; for an LM a token per answer
        position, from the distribution at the position before it. Draws come from ``generator`` (CPU)."""

    # ------------------------------------------------------------------ metrics
    def eval_context(self, options, data: Splits, retrained_state: dict | None,
                     placement: Placement) -> Any:
        """What metrics compare against, computed once per process: the retrained model's
        statistics (TOFU), a random network's predictions (ZRF)."""

    def evaluate(self, model: nn.Module, options, data: Splits, context: Any,
                 placement: Placement) -> Evaluation:
        """Every metric of ``model`` (on the placement's device) as {name: float}, with the per-example
        values they were computed from in ``.examples`` (``Evaluation``): no second pass over the data."""

    def validate(self, model: nn.Module, options, data: Splits, context: Any,
                 placement: Placement) -> dict[str, float]:
        """The validation view: {name: float} of ``model`` (weights in place, on the placement's device)
        on data the report never scores, every name of ``gap_metrics`` among them; arguments as
        ``evaluate``'s, ``context`` from ``eval_context`` with the retrained model's state.

        Why: hyper-parameter search must choose on data other than what the report scores
        (selection without peeking). Its default objective is the mean |gap| to the retrained model
        over ``gap_metrics``, each validated the same way, so the names are the registry's
        (``mcu_ray.metrics``: directions) and keep their meaning, measured on other rows. Forget-side
        metrics stay on Df, the unlearning target itself. What each task substitutes for the rest:
        classification reads its ``validation`` split where ``evaluate`` reads the test split
        (``acc_test``, the attacks' non-members); TOFU reads rows of Dr that no retain evaluation
        scores (``TofuRows.validation``) for its retain metrics, and Model Utility there is the
        harmonic mean of probability and ROUGE-L (Dr's rows carry no perturbed answers: no truth
        ratio). Raises ValueError when the options give no such rows (``check_validation``)."""

    def evaluate_curve(self, model: nn.Module, options, data: Splits, context: Any, placement: Placement,
                       control_points: list[dict], ts: list[float], kind: str = "bezier") -> list[Evaluation]:
        """{"t": t, **metrics} of phi(t) for each t, each with its ``examples``, the curve of ``kind``
        (``curves.KINDS``): ``evaluate_one_by_one``, or several points per pass where the task can
        (classifiers: ``tasks.vectorized``), the same numbers either way. ``model`` is scratch space."""


@runtime_checkable
class ClassifierTask(Task, Protocol):
    """A task of the classification family also exposes its class logits (Bad Teaching's KL) and
    a randomly initialised network (Bad Teaching's incompetent teacher, ZRF's reference)."""

    def logits(self, forward: Callable, batch: dict) -> torch.Tensor:
        """Class logits of ``forward`` on a batch, shape (batch, classes)."""

    def random_model(self, options, seed: int, placement: Placement | None = None) -> nn.Module:
        """The task's architecture randomly initialised from its config (never a checkpoint's
        weights), seeded on the CPU like ``new_model``, then placed: see ``random_network``."""


def evaluate_one_by_one(task: Task, model: nn.Module, options, data: Splits, context: Any,
                        placement: Placement, control_points: list[dict], ts: list[float],
                        kind: str = "bezier") -> list[Evaluation]:
    """Each phi(t) loaded into ``model`` in turn and evaluated (large models: one copy in memory)."""
    rows = []
    for t in ts:
        load_point(model, control_points, t, kind)
        evaluation = task.evaluate(model, options, data, context, placement)
        rows.append(Evaluation({"t": t, **evaluation}, evaluation.examples))
    return rows


RANDOM_NETWORK_SEED_OFFSET = 7919  # the random network's seed: the options' model_seed + this prime


def random_network(task: ClassifierTask, options, placement: Placement | None = None) -> nn.Module:
    """The randomly initialised network, frozen in eval mode: Bad Teaching's incompetent teacher and
    ZRF's reference are this one network (Chundawat et al. 2023).

    Their code (github.com/vikram2000b/bad-teaching-unlearning, CIFARSuper20_Rocket_Unlearn.ipynb)
    builds ``unlearning_teacher = ResNet18(num_classes=20, pretrained=False).to(device).eval()``
    and passes that same object to ``blindspot_unlearner`` and to ``UnLearningScore`` (ZRF).
    So both use a fresh architecture, not a pretrained backbone, and its BatchNorm layers keep
    their initial running statistics (mean 0, variance 1): they are never re-estimated on any
    data, here neither; eval mode also turns dropout off. Their network is unseeded; here the seed
    is a function of the options alone, so every process that trains with Bad Teaching or computes
    ZRF builds the same network.
    """
    seed = options.model_seed + RANDOM_NETWORK_SEED_OFFSET
    model = task.random_model(options, seed=seed, placement=placement).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
