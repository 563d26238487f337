"""What every classification task shares: splits in memory, batches, metrics.

A concrete task (``digits``, later CIFAR-10 ...) supplies only a loader for its
arrays and a model builder; the unlearning splits, the metrics of MU-Bench and
the BatchNorm re-estimation live here once.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mcu_ray.batches import iterate_batches, select
from mcu_ray.placement import Placement
from mcu_ray.tasks.base import evaluate_one_by_one
from mcu_ray.tasks.batchnorm import recompute_batchnorm
from mcu_ray.tasks.vectorized import curve_probabilities, faster_of, in_groups

# Metrics of one evaluated model; +1 = higher is better for an unlearned model.
METRIC_DIRECTIONS = {
    "acc_test": +1,
    "acc_retain": +1,
    "acc_forget": -1,  # forgetting means the forget set is no longer fit
    "zrf": +1,  # 1 = predictions on Df as uninformed as a random network's
    "loss_retain": -1,
    "loss_forget": +1,
}


@dataclass
class ClassificationData:
    """All tensors of one (task options, forget ratio): train = forget + retain.

    ``train`` and ``test`` are batch dicts: the model's inputs (``x`` for a plain
    module; ``pixel_values``, ``input_ids``, ... for a Hugging Face model) and ``y``.
    """

    train: dict  # name -> tensor with examples along dim 0
    test: dict
    forget_idx: torch.Tensor  # indices into the training set
    retain_idx: torch.Tensor
    num_classes: int

    def split(self, name: str) -> dict:
        """A split as a batch dict: test, train, forget or retain."""
        if name in ("test", "train"):
            return getattr(self, name)
        return select(self.train, {"forget": self.forget_idx, "retain": self.retain_idx}[name])


def forget_indices(n_train: int, ratio: float, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded forget/retain split; the forget sets of smaller ratios nest in larger ones.

    Like MU-Bench's index lists: one fixed permutation, ratio r takes its first r %.
    """
    perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(10_000 + split_seed))
    n_forget = max(1, int(round(n_train * ratio / 100.0)))
    forget = perm[:n_forget].sort().values
    retain = perm[n_forget:].sort().values
    return forget, retain


def forget_indices_from_file(path: str, n_train: int, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MU-Bench's forget list: one training index per line covering 10 %; ratio r takes its first r/10."""
    listed = [int(line) for line in open(path) if line.strip()]
    n_forget = max(1, int(round(len(listed) * ratio / 10.0)))
    forget = torch.tensor(sorted(listed[:n_forget]))
    if ratio > 10 or forget.max() >= n_train or forget.min() < 0:
        raise ValueError(f"{path}: ratio {ratio} % needs indices in [0, {n_train}) within the list's 10 %")
    keep = torch.ones(n_train, dtype=torch.bool)
    keep[forget] = False
    return forget, torch.nonzero(keep).flatten()


def relabel_wrong(batch: dict, data: "ClassificationData", generator: torch.Generator) -> dict:
    """The batch with every label replaced by a uniformly random *wrong* class."""
    shift = torch.randint(1, data.num_classes, batch["y"].shape, generator=generator).to(batch["y"].device)
    return {**batch, "y": (batch["y"] + shift) % data.num_classes}


def plain_logits(forward: Callable, batch: dict) -> torch.Tensor:
    """Logits of a plain module called on ``batch["x"]``, shape (batch, classes)."""
    return forward(batch["x"])


def hf_logits(forward: Callable, batch: dict) -> torch.Tensor:
    """Logits of a Hugging Face model called with every input in ``batch`` but the labels."""
    return forward(**{k: v for k, v in batch.items() if k != "y"}).logits


@torch.no_grad()
def predict_proba(model: nn.Module, batch: dict, placement: Placement, logits_fn: Callable = plain_logits,
                  batch_size: int = 256) -> torch.Tensor:
    """Softmax predictions over a batch dict, computed on the placement's device; shape (n, classes), CPU."""
    model.eval()
    out = []
    for minibatch in iterate_batches(batch, batch_size):
        with placement.autocast():
            logits = logits_fn(model, placement.batch(minibatch))
        out.append(F.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon divergence per row (natural log), shape (n,)."""
    m = 0.5 * (p + q)

    def kl(a, b):
        return (a * (torch.log(a.clamp_min(1e-12)) - torch.log(b.clamp_min(1e-12)))).sum(-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def zrf_score(p_model: torch.Tensor, p_random: torch.Tensor) -> float:
    """Zero Retrain Forgetting (Chundawat et al. 2023): 1 - mean JS(model, random net) on Df.

    JS uses the natural log, so its maximum is ln 2; following the original code the
    raw divergence is averaged, and ZRF = 1 means indistinguishable from a random net.
    """
    return float(1.0 - js_divergence(p_model, p_random).mean())


@torch.no_grad()
def evaluate_model(model: nn.Module, data: ClassificationData, random_forget_proba: torch.Tensor,
                   placement: Placement, logits_fn: Callable = plain_logits) -> dict:
    """Every metric of one model; BatchNorm statistics must already be set."""
    splits = {name: data.split(name) for name in EVAL_SPLITS}
    return metrics_from_proba({name: predict_proba(model, split, placement, logits_fn) for name, split in splits.items()},
                              {name: split["y"] for name, split in splits.items()}, random_forget_proba)


EVAL_SPLITS = ("test", "retain", "forget")


def metrics_from_proba(proba_by_split: dict, labels: dict, random_forget_proba: torch.Tensor) -> dict:
    """MU-Bench's metrics from the model's softmax outputs and the labels on test, retain and forget;
    inf (a diverged model's loss) recorded as NaN, like every other failed number."""
    metrics = {}
    for split in EVAL_SPLITS:
        y, proba = labels[split], proba_by_split[split]  # (n,), (n, classes)
        metrics[f"acc_{split}"] = float((proba.argmax(-1) == y).float().mean())
        if split != "test":
            nll = -torch.log(proba.gather(1, y[:, None]).clamp_min(1e-12)).mean()
            metrics[f"loss_{split}"] = float(nll)
        if split == "forget":
            metrics["zrf"] = zrf_score(proba, random_forget_proba)
    return {k: (v if math.isfinite(v) else float("nan")) for k, v in metrics.items()}


@dataclass
class ClassificationTask:
    """A classification task: its arrays, its model, and the shared machinery above."""

    name: str
    Options: type  # dataclass of task options (validated from the sweep file)
    load_arrays: Callable  # options -> (train batch dict, test batch dict, num_classes)
    build_model: Callable  # options -> nn.Module
    default_ratios: tuple
    default_hparams: dict  # method -> {param: value}; the task's tuned defaults
    family: str = "classification"
    metric_directions: dict = dataclasses.field(default_factory=lambda: dict(METRIC_DIRECTIONS))
    figure_metrics: tuple = tuple(METRIC_DIRECTIONS)  # drawn along t in the report
    retain_loss: str = "loss_retain"  # the L(Dr) of the MCU retain condition
    forget_loss: str = "loss_forget"  # the L(Df) of the MCU forget condition
    logits: Callable = plain_logits  # (forward, batch) -> (batch, classes)
    check_extra: Callable | None = None  # (options, path) -> None: the task's own checks of its options
    # pathway unlearning: the split an unlearned model should treat Df like (data never trained on),
    # and the metrics whose mean gap to the retrained model picks t*
    holdout_split: str = "test"
    selection_metrics: tuple = ("acc_forget", "acc_retain", "acc_test")
    # whether several t-points may share one vmapped pass (a model that draws random numbers in its
    # forward, like ViLT's patch sampling, cannot: vmap refuses random operations)
    vectorizable: bool = True

    def normalize_options(self, options):
        """Options as workers on any node read them (e.g. local paths made absolute)."""
        normalized = getattr(options, "normalized", None)
        return normalized() if normalized else options

    def check_ratios(self, ratios, options: dict, path: str) -> None:
        """Any ratio in (0, 100) works: the forget set is a seeded subset of the training set."""

    def check_options(self, options, path: str, base_dir) -> None:
        check = getattr(self.Options, "check", None)
        if check is not None:
            check(options, path)
        if self.check_extra is not None:
            self.check_extra(options, path)

    def load(self, options: dict, ratio: float) -> ClassificationData:
        opts = self.Options(**options)
        train, test, num_classes = self.load_arrays(opts)
        forget, retain = self.forget_split(opts, len(train["y"]), ratio)
        return ClassificationData(train, test, forget, retain, num_classes)

    def forget_split(self, opts, n_train: int, ratio: float):
        """(forget, retain) indices: MU-Bench's index list when the options name one, else seeded."""
        index_file = getattr(opts, "forget_index_file", "")
        if index_file:
            return forget_indices_from_file(index_file, n_train, ratio)
        return forget_indices(n_train, ratio, opts.split_seed)

    def example_losses(self, forward: Callable, batch: dict, reduction: str = "mean") -> torch.Tensor:
        """Per-example cross-entropy, shape (batch,) (one target: token mean = sum)."""
        return F.cross_entropy(self.logits(forward, batch), batch["y"], reduction="none")

    def losses_and_accuracy(self, forward: Callable, batch: dict) -> tuple[torch.Tensor, float]:
        """Per-example cross-entropy (batch,) and the fraction classified correctly, from one forward."""
        logits = self.logits(forward, batch)
        correct = (logits.argmax(-1) == batch["y"]).float().mean()
        return F.cross_entropy(logits, batch["y"], reduction="none"), float(correct)

    def new_model(self, options: dict, seed: int, placement: Placement | None = None) -> nn.Module:
        torch.manual_seed(seed)
        model = self.build_model(self.Options(**options))  # on the CPU: a seed means the same weights anywhere
        return placement.model(model) if placement is not None else model

    relabel = staticmethod(relabel_wrong)

    def eval_context(self, options: dict, data: ClassificationData, reference_state: dict | None,
                     placement: Placement):
        """Predictions on Df of a randomly initialised network (the ZRF reference).

        ``reference_state`` (the retrained model) is not needed by these metrics.
        """
        rand = self.new_model(options, seed=self.Options(**options).model_seed + 7919, placement=placement)
        recompute_batchnorm(rand, data.split("retain"), placement, self.logits)
        return predict_proba(rand, data.split("forget"), placement, self.logits)

    def evaluate_curve(self, model: nn.Module, options: dict, data: ClassificationData, context,
                       placement: Placement, control_points: list[dict], ts: list[float],
                       vectorize: bool | None = None) -> list[dict]:
        """Every metric at each t; groups of t-points in one vectorised pass (``tasks.vectorized``)
        where that is faster, BatchNorm re-estimated on Dr for each point: the same numbers as
        ``evaluate`` point by point. ``vectorize`` None: always on a GPU; on a CPU, measured on
        the process's first curve (digits' conv net is faster one point at a time, a BERT vmapped)."""
        def one_by_one(ts_group: list[float]) -> list[dict]:
            return evaluate_one_by_one(self, model, options, data, context, placement, control_points, ts_group)

        if not self.vectorizable or vectorize is False:
            return one_by_one(ts)
        splits = {name: data.split(name) for name in EVAL_SPLITS}
        labels = {name: split["y"] for name, split in splits.items()}

        def vmapped(ts_group: list[float]) -> list[dict]:
            outputs = curve_probabilities(model, control_points, ts_group, splits, splits["retain"], placement,
                                          self.logits)
            return [{"t": t, **metrics_from_proba(proba, labels, context)} for t, proba in zip(ts_group, outputs)]

        if vectorize or placement.device.type == "cuda":
            return in_groups(vmapped, model, list(ts), placement, key=(self.name, placement))
        return faster_of(one_by_one, vmapped, list(ts), key=(self.name, placement))

    def evaluate(self, model: nn.Module, options: dict, data: ClassificationData, context,
                 placement: Placement) -> dict:
        """Re-estimate BatchNorm on Dr, then compute every metric; ``context`` from eval_context."""
        recompute_batchnorm(model, data.split("retain"), placement, self.logits)
        return evaluate_model(model, data, context, placement, self.logits)
