"""What every classification task shares: splits in memory, batches, metrics.

A concrete task (``digits``, later CIFAR-10 ...) supplies only a loader for its
arrays and a model builder; the unlearning splits, the metrics of MU-Bench, the
membership attacks (SalUn's MIA-efficacy, a loss attack's AUC) and the BatchNorm
re-estimation live here once.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mcu_ray.batches import iterate_batches, select
from mcu_ray.errors import SpecError
from mcu_ray.metrics import directions
from mcu_ray.placement import Placement
from mcu_ray.tasks.base import Evaluation, evaluate_one_by_one, random_network
from mcu_ray.tasks.batchnorm import recompute_batchnorm
from mcu_ray.tasks.privacy import mia_auc, svc_mia_efficacy
from mcu_ray.tasks.vectorized import curve_logits, faster_of, in_groups

# Metrics of one evaluated model (declared in the registry, mcu_ray.metrics); the first six drawn along t.
FIGURE_METRICS = ("acc_test", "acc_retain", "acc_forget", "zrf", "loss_retain", "loss_forget")
METRICS = (*FIGURE_METRICS, "mia_efficacy", "mia_loss")


@dataclass
class ClassificationData:
    """All tensors of one (task options, forget ratio).

    The dataset's training rows are cut three ways, by index into ``train``:
    - ``validation``: rows held out of D, never trained on by the original, the retrained model or
      any unlearning method, and never scored by the report (which reads test, forget and retain).
      The options' ``val_fraction`` of the training rows (0: none), the same rows at every forget
      ratio and disjoint from every forget set (``validation_indices``). Uses: pathway unlearning
      aligns the forget accuracy with the original's accuracy here (``Task.validation_split``);
      ``ClassificationTask.validate`` scores here in the test split's place, so hyper-parameter search
      chooses without touching the test set. A checkpoint
      kept as the original (MU-Bench ``epochs: 0``) or a published retain-only checkpoint was
      trained elsewhere, most likely on these rows too: held out of D here, not of that model.
    - ``forget`` (Df) and ``retain`` (Dr): D = Df + Dr, what ``split("train")`` returns and the
      original trains on.
    ``test`` is the dataset's own test split. ``train`` and ``test`` are batch dicts: the model's
    inputs (``x`` for a plain module; ``pixel_values``, ``input_ids``, ... for a Hugging Face
    model) and ``y``.
    """

    train: dict  # name -> tensor with examples along dim 0: every training row, D and validation
    test: dict
    forget_idx: torch.Tensor  # indices into ``train``
    retain_idx: torch.Tensor
    num_classes: int
    validation_idx: torch.Tensor = dataclasses.field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def split(self, name: str) -> dict:
        """A split as a batch dict: test, train (D = forget + retain), forget, retain or validation."""
        if name == "test":
            return self.test
        if name == "train":
            if len(self.validation_idx) == 0:  # D is every training row
                return self.train
            return select(self.train, torch.cat([self.forget_idx, self.retain_idx]).sort().values)
        return select(self.train, {"forget": self.forget_idx, "retain": self.retain_idx,
                                   "validation": self.validation_idx}[name])


def check_val_fraction(fraction: float, path: str) -> None:
    """A task option ``val_fraction``: 0 (no validation split: D is every training row) up to 0.5."""
    if not 0 <= fraction <= 0.5:
        raise SpecError(f"{path}.val_fraction", fraction, "expected a fraction of the training rows in [0, 0.5]")


def validation_size(n_train: int, fraction: float) -> int:
    """Rows of the validation split: ``fraction`` of the training rows, rounded."""
    return int(round(n_train * fraction))


def _permutation(n_train: int, split_seed: int) -> torch.Tensor:
    return torch.randperm(n_train, generator=torch.Generator().manual_seed(10_000 + split_seed))


def forget_indices(n_train: int, ratio: float, split_seed: int,
                   n_validation: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded forget/retain split; the forget sets of smaller ratios nest in larger ones.

    Like MU-Bench's index lists: one fixed permutation of the training rows. Its last
    ``n_validation`` rows are the validation split (``validation_indices``); the rest are D, and
    ratio r takes the first r % of D. So no forget set, at any ratio, holds a validation row.
    """
    perm = _permutation(n_train, split_seed)
    n_d = n_train - n_validation
    n_forget = max(1, int(round(n_d * ratio / 100.0)))
    forget = perm[:n_forget].sort().values
    retain = perm[n_forget:n_d].sort().values
    return forget, retain


def validation_indices(n_train: int, n_validation: int, split_seed: int) -> torch.Tensor:
    """The validation rows of ``forget_indices``' permutation: its tail, outside every forget set."""
    return _permutation(n_train, split_seed)[n_train - n_validation:].sort().values


def _listed(path: str) -> list[int]:
    return [int(line) for line in open(path) if line.strip()]


def check_index_file(path: str, field: str) -> None:
    """A SpecError naming ``field`` unless ``path`` is a forget list as MU-Bench writes it: UTF-8 text, one
    training row index (a non-negative integer) per line, at least one."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise SpecError(field, path, "no such file")
    try:
        lines = file.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SpecError(field, path, "not UTF-8 text: expected one training row index per line") from None
    entries = [(number, line.strip()) for number, line in enumerate(lines, 1) if line.strip()]
    if not entries:
        raise SpecError(field, path, "empty: expected one training row index per line (MU-Bench's forget list)")
    for number, entry in entries:
        if not (entry.isascii() and entry.isdigit()):
            raise SpecError(field, path, f"line {number} is {entry[:40]!r}: expected one training row index "
                                         f"(a non-negative integer) per line")


def validation_indices_from_file(path: str, n_train: int, n_validation: int, split_seed: int) -> torch.Tensor:
    """With MU-Bench's forget list: ``n_validation`` seeded rows among those the list does not name,
    so outside the forget set of every ratio (the list covers the largest, 10 %)."""
    outside = torch.ones(n_train, dtype=torch.bool)
    outside[[i for i in _listed(path) if 0 <= i < n_train]] = False
    outside = torch.nonzero(outside).flatten()
    if n_validation > len(outside):
        raise ValueError(f"{path}: {n_validation} validation rows asked, {len(outside)} rows outside the list")
    pick = torch.randperm(len(outside), generator=torch.Generator().manual_seed(20_000 + split_seed))
    return outside[pick[:n_validation]].sort().values


def forget_indices_from_file(path: str, n_train: int, ratio: float,
                             validation: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MU-Bench's forget list: one training index per line covering 10 %; ratio r takes its first r/10.
    Retain: every other row but the ``validation`` rows."""
    listed = _listed(path)
    n_forget = max(1, int(round(len(listed) * ratio / 10.0)))
    forget = torch.tensor(sorted(listed[:n_forget]))
    if ratio > 10 or forget.max() >= n_train or forget.min() < 0:
        raise ValueError(f"{path}: ratio {ratio} % needs indices in [0, {n_train}) within the list's 10 %")
    keep = torch.ones(n_train, dtype=torch.bool)
    keep[forget] = False
    if validation is not None:
        keep[validation] = False
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
def predict_logits(model: nn.Module, batch: dict, placement: Placement, logits_fn: Callable = plain_logits,
                   batch_size: int = 256) -> torch.Tensor:
    """Class logits over a batch dict, computed on the placement's device; shape (n, classes), float32, CPU."""
    model.eval()
    out = []
    for minibatch in iterate_batches(batch, batch_size):
        with placement.autocast():
            logits = logits_fn(model, placement.batch(minibatch))
        out.append(logits.float().cpu())
    return torch.cat(out)


def predict_proba(model: nn.Module, batch: dict, placement: Placement,
                  logits_fn: Callable = plain_logits) -> torch.Tensor:
    """Softmax predictions over a batch dict, shape (n, classes), CPU."""
    return F.softmax(predict_logits(model, batch, placement, logits_fn), dim=-1)


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Chundawat et al.'s "JS divergence" of two (n, classes) probability matrices, a scalar, as
    their code computes it: ``JSDiv`` in github.com/vikram2000b/bad-teaching-unlearning
    (commit f1aa988), ``metrics.py`` lines 5-7, ``0.5*F.kl_div(torch.log(p), m) +
    0.5*F.kl_div(torch.log(q), m)`` with m = (p + q)/2. ``F.kl_div(input, target)`` is
    target*(log target - input) elementwise, and its default reduction "mean" averages over all
    n*classes elements (written out here: torch warns that "mean" will come to mean "batchmean").
    So this is the row mean of ½[KL(m‖p) + KL(m‖q)] (not the textbook ½[KL(p‖m) + KL(q‖m)])
    divided by the number of classes. One departure: a probability that underflowed to exactly 0
    (where their code returns inf) is read as the smallest normal float of its dtype.
    """
    tiny = torch.finfo(p.dtype).tiny
    p, q = p.clamp_min(tiny), q.clamp_min(tiny)
    m = 0.5 * (p + q)
    return 0.5 * (m * (m.log() - p.log())).mean() + 0.5 * (m * (m.log() - q.log())).mean()


def zrf_score(p_model: torch.Tensor, p_random: torch.Tensor) -> float:
    """Zero Retrain Forgetting (Chundawat et al. 2023): 1 - ``js_divergence`` of the model's and the
    random network's predictions on Df, as ``UnLearningScore`` (``metrics.py`` lines 10-25 of
    their code) returns it; 1 = indistinguishable from the random network."""
    return float(1.0 - js_divergence(p_model, p_random))


@torch.no_grad()
def evaluate_model(model: nn.Module, data: ClassificationData, random_forget_proba: torch.Tensor,
                   placement: Placement, logits_fn: Callable = plain_logits, held_out: str = "test") -> Evaluation:
    """Every metric of one model, with its per-example values; BatchNorm statistics must already be set.
    ``held_out``: the split read in the test split's place (``acc_test``, the attacks' non-members);
    "validation" for ``ClassificationTask.validate``."""
    splits = {name: data.split(held_out if name == "test" else name) for name in EVAL_SPLITS}
    return metrics_from_logits({name: predict_logits(model, split, placement, logits_fn)
                                for name, split in splits.items()},
                               {name: split["y"] for name, split in splits.items()}, random_forget_proba)


EVAL_SPLITS = ("test", "retain", "forget")


def metrics_from_logits(logits_by_split: dict, labels: dict, random_forget_proba: torch.Tensor) -> Evaluation:
    """MU-Bench's metrics and the membership attacks from the model's logits and the labels on test,
    retain and forget; inf (a diverged model's loss) recorded as NaN, like every other failed number.
    ``examples``: per split, what the metrics average or attack, from the same tensors (``split_examples``)."""
    metrics, examples = {}, {}
    proba_by_split = {split: F.softmax(logits, dim=-1) for split, logits in logits_by_split.items()}
    for split in EVAL_SPLITS:
        y, proba = labels[split], proba_by_split[split]  # (n,), (n, classes)
        predicted = proba.argmax(-1)  # (n,)
        metrics[f"acc_{split}"] = float((predicted == y).float().mean())
        nll = -torch.log(proba.gather(1, y[:, None]).clamp_min(1e-12))  # (n, 1)
        if split != "test":
            metrics[f"loss_{split}"] = float(nll.mean())
        if split == "forget":
            metrics["zrf"] = zrf_score(proba, random_forget_proba)
        examples[split] = split_examples(y, predicted, proba, nll[:, 0])
    attacks, scores = membership_attacks(logits_by_split, proba_by_split, labels)
    metrics |= attacks
    for split in EVAL_SPLITS:
        examples[split]["mia_loss_score"] = scores.get(split, np.full(len(labels[split]), np.nan))
    return Evaluation({k: (v if math.isfinite(v) else float("nan")) for k, v in metrics.items()}, examples)


def split_examples(y: torch.Tensor, predicted: torch.Tensor, proba: torch.Tensor, nll: torch.Tensor) -> dict:
    """One split's per-example values: the label, the predicted class, whether it is right (``acc_*``
    is their mean), the true class's probability (SalUn's MIA feature) and its cross-entropy (``loss_*``
    is the mean; float32, clamped at 1e-12 as the mean's terms are)."""
    return {"label": y.numpy(), "predicted": predicted.numpy(), "correct": (predicted == y).numpy(),
            "prob": proba.gather(1, y[:, None])[:, 0].numpy(), "loss": nll.numpy()}


def membership_attacks(logits_by_split: dict, proba_by_split: dict, labels: dict) -> tuple[dict, dict]:
    """``mia_efficacy``: SalUn's SVC attack on the true-class softmax confidence (shadow members: Dr's first
    |test| rows, in Dr's order, as SalUn's ``Subset(retain, range(len(test)))``; shadow non-members: the
    test split; target: Df). ``mia_loss``: ROC AUC of the per-example cross-entropy, Df against the test
    split, from float64 log-softmax (float32 rounds a confident example's loss to 0, tying it with others).
    Returns the two metrics and the loss attack's scores, split -> (n,) (forget and test)."""
    def true_class(values: dict, split: str) -> np.ndarray:  # (n,)
        return values[split].gather(1, labels[split][:, None])[:, 0].numpy()

    confidence = {split: true_class(proba_by_split, split) for split in EVAL_SPLITS}
    log_proba = {split: F.log_softmax(logits_by_split[split].double(), dim=-1) for split in ("forget", "test")}
    scores = {split: -true_class(log_proba, split) for split in ("forget", "test")}
    n_test = len(confidence["test"])
    return ({"mia_efficacy": svc_mia_efficacy(confidence["retain"][:n_test], confidence["test"], confidence["forget"]),
             "mia_loss": mia_auc(scores["forget"], scores["test"])}, scores)


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
    metric_directions: dict = dataclasses.field(default_factory=lambda: directions(METRICS))
    figure_metrics: tuple = FIGURE_METRICS  # drawn along t in the report
    retain_loss: str = "loss_retain"  # the L(Dr) of the MCU retain condition
    forget_loss: str = "loss_forget"  # the L(Df) of the MCU forget condition
    logits: Callable = plain_logits  # (forward, batch) -> (batch, classes)
    check_extra: Callable | None = None  # (options, path) -> None: the task's own checks of its options
    build_random: Callable | None = None  # options -> nn.Module from the config only (None: build_model is)
    # pathway unlearning: the held-out split whose accuracy (by the original) Df's should come to
    # (data never trained on, and not scored by the report), and the metrics whose mean gap to the
    # retrained model the report shows
    validation_split: str = "validation"
    gap_metrics: tuple = ("acc_forget", "acc_retain", "acc_test")
    # whether several t-points may share one vmapped pass (a model that draws random numbers in its
    # forward, like ViLT's patch sampling, cannot: vmap refuses random operations)
    vectorizable: bool = True

    def normalize_options(self, options):
        """Options as workers on any node read them (e.g. local paths made absolute)."""
        normalized = getattr(options, "normalized", None)
        return normalized() if normalized else options

    def check_ratios(self, ratios, options, path: str) -> None:
        """Any ratio in (0, 100) works: the forget set is a seeded subset of the training set."""

    def check_validation(self, options, path: str) -> None:
        """``validate`` scores on the validation split: refuse ``val_fraction`` 0 (none; a task without
        the option has none either)."""
        fraction = getattr(options, "val_fraction", 0.0)
        if fraction <= 0:
            raise SpecError(f"{path}.val_fraction", fraction, "hyper-parameter search scores on the validation "
                                                              "split: expected val_fraction > 0, e.g. 0.1")

    def check_options(self, options, path: str, base_dir) -> None:
        check = getattr(self.Options, "check", None)
        if check is not None:
            check(options, path)
        if self.check_extra is not None:
            self.check_extra(options, path)

    def load(self, opts, ratio: float) -> ClassificationData:
        train, test, num_classes = self.load_arrays(opts)
        forget, retain = self.forget_split(opts, len(train["y"]), ratio)
        return ClassificationData(train, test, forget, retain, num_classes,
                                  self.validation_rows(opts, len(train["y"])))

    def validation_rows(self, opts, n_train: int) -> torch.Tensor:
        """Indices of the validation split (``ClassificationData``): the options' ``val_fraction``
        of the training rows (a task without that option has none)."""
        n_validation = validation_size(n_train, getattr(opts, "val_fraction", 0.0))
        index_file = getattr(opts, "forget_index_file", "")
        if index_file:
            return validation_indices_from_file(index_file, n_train, n_validation, opts.split_seed)
        return validation_indices(n_train, n_validation, opts.split_seed)

    def forget_split(self, opts, n_train: int, ratio: float):
        """(forget, retain) indices, both outside the validation rows: MU-Bench's index list when the
        options name one, else seeded."""
        index_file = getattr(opts, "forget_index_file", "")
        if index_file:
            return forget_indices_from_file(index_file, n_train, ratio, self.validation_rows(opts, n_train))
        n_validation = validation_size(n_train, getattr(opts, "val_fraction", 0.0))
        return forget_indices(n_train, ratio, opts.split_seed, n_validation)

    def example_losses(self, forward: Callable, batch: dict, reduction: str = "mean") -> torch.Tensor:
        """Per-example cross-entropy, shape (batch,) (one target: token mean = sum)."""
        return F.cross_entropy(self.logits(forward, batch), batch["y"], reduction="none")

    def losses_and_accuracy(self, forward: Callable, batch: dict) -> tuple[torch.Tensor, float]:
        """Per-example cross-entropy (batch,) and the fraction classified correctly, from one forward."""
        logits = self.logits(forward, batch)
        correct = (logits.argmax(-1) == batch["y"]).float().mean()
        return F.cross_entropy(logits, batch["y"], reduction="none"), float(correct)

    def new_model(self, options, seed: int, placement: Placement | None = None) -> nn.Module:
        torch.manual_seed(seed)
        model = self.build_model(options)  # on the CPU: a seed means the same weights anywhere
        return placement.model(model) if placement is not None else model

    def random_model(self, options, seed: int, placement: Placement | None = None) -> nn.Module:
        """The architecture randomly initialised from its config: ``build_random``, or ``build_model``
        where that builds from a config already (digits, tiny models)."""
        torch.manual_seed(seed)
        model = (self.build_random or self.build_model)(options)
        return placement.model(model) if placement is not None else model

    relabel = staticmethod(relabel_wrong)

    @torch.no_grad()
    def sampled_targets(self, forward: Callable, batch: dict, generator: torch.Generator) -> dict:
        """The batch with each label drawn from ``forward``'s own softmax, y ~ Categorical(logits)
        (Sophia's Gauss-Newton-Bartlett curvature): one uniform per example from ``generator`` (on the
        CPU, whatever the device), inverted through the classes' cumulative probabilities."""
        cdf = F.softmax(self.logits(forward, batch).float(), dim=-1).cumsum(-1)  # (batch, classes)
        u = torch.rand(cdf.shape[:-1], generator=generator).to(cdf.device)  # (batch,)
        y = torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_max(cdf.size(-1) - 1)
        return {**batch, "y": y}

    def eval_context(self, options: dict, data: ClassificationData, retrained_state: dict | None,
                     placement: Placement):
        """Predictions on Df of the random network (``base.random_network``: Bad Teaching's
        incompetent teacher, BatchNorm at its initial statistics), ZRF's reference.

        ``retrained_state`` (the retrained model) is not needed by these metrics.
        """
        return predict_proba(random_network(self, options, placement), data.split("forget"), placement, self.logits)

    def evaluate_curve(self, model: nn.Module, options: dict, data: ClassificationData, context,
                       placement: Placement, control_points: list[dict], ts: list[float], kind: str = "bezier",
                       vectorize: bool | None = None) -> list[Evaluation]:
        """Every metric at each t, with its per-example values (``Evaluation``); groups of t-points in
        one vectorised pass (``tasks.vectorized``) where that is faster, BatchNorm re-estimated on Dr
        for each point: the same numbers as ``evaluate`` point by point. ``vectorize`` None: always on a
        GPU; on a CPU, measured on the process's first curve (digits' conv net is faster one point at a
        time, a BERT vmapped)."""
        def one_by_one(ts_group: list[float]) -> list[Evaluation]:
            return evaluate_one_by_one(self, model, options, data, context, placement, control_points, ts_group,
                                       kind)

        if not self.vectorizable or vectorize is False:
            return one_by_one(ts)
        splits = {name: data.split(name) for name in EVAL_SPLITS}
        labels = {name: split["y"] for name, split in splits.items()}

        def vmapped(ts_group: list[float]) -> list[Evaluation]:
            outputs = curve_logits(model, control_points, ts_group, splits, splits["retain"], placement, self.logits,
                                   kind)
            evaluations = [metrics_from_logits(logits, labels, context) for logits in outputs]
            return [Evaluation({"t": t, **e}, e.examples) for t, e in zip(ts_group, evaluations)]

        if vectorize or placement.device.type == "cuda":
            return in_groups(vmapped, model, list(ts), placement, key=(self.name, placement))
        return faster_of(one_by_one, vmapped, list(ts), key=(self.name, placement))

    def evaluate(self, model: nn.Module, options: dict, data: ClassificationData, context,
                 placement: Placement) -> Evaluation:
        """Re-estimate BatchNorm on Dr, then compute every metric; ``context`` from eval_context."""
        recompute_batchnorm(model, data.split("retain"), placement, self.logits)
        return evaluate_model(model, data, context, placement, self.logits)

    def validate(self, model: nn.Module, options: dict, data: ClassificationData, context,
                 placement: Placement) -> dict[str, float]:
        """``evaluate``'s metrics, under its names, with the validation split in the test split's place:
        ``acc_test`` is the validation rows' accuracy, ``mia_efficacy`` and ``mia_loss`` take them as the
        non-members; Df and Dr metrics (and ZRF, on Df) are ``evaluate``'s. BatchNorm re-estimated on Dr
        first, as ``evaluate`` does. A plain dict: no per-example values."""
        if len(data.validation_idx) == 0:
            raise ValueError(f"{self.name}: no validation rows to score (options.val_fraction is 0): "
                             "hyper-parameter search needs val_fraction > 0, e.g. 0.1")
        recompute_batchnorm(model, data.split("retain"), placement, self.logits)
        return dict(evaluate_model(model, data, context, placement, self.logits, held_out="validation"))
