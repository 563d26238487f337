"""What a sweep will cost, before anything runs: device-hours per job kind.

Counting is pure: from the plan, the examples each job puts through forward + backward or a
forward only, and its greedy decoding steps. Pricing is a short calibration on this machine's
default device (CUDA if present, else the CPU): a task's own model timed on its own data where
both are here; else a FLOP model (6·P·T FLOPs to train an example, 2·P·T forward; P parameters,
T positions per example) over the FLOP/s this device reaches on a small transformer, with P
counted from the model's config or, for hub checkpoints, assumed (``CHECKPOINTS``). Artifacts
already in the store count as done, so a half-finished sweep is priced by what is left.

Device-hours are summed job time on one whole device: not wall time (jobs run side by side),
and without job start-up (model build, weight loading, Ray worker groups) or data loading.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from mcu_ray.batches import batch_length, row_lengths, select, trim_padding
from mcu_ray.errors import SpecError
from mcu_ray.jobs import bend_key
from mcu_ray.methods import METHODS
from mcu_ray.methods.curriculum import CurriculumParams, needs_original_losses
from mcu_ray.pathway_curve import mixed_batch_sizes, subset_size
from mcu_ray.placement import Placement
from mcu_ray.plan import Plan
from mcu_ray.spec import SweepSpec
from mcu_ray.store import Store
from mcu_ray.train import bend_budget
from mcu_ray.tasks import TASKS, tofu
from mcu_ray.tasks.classification import validation_size
from mcu_ray.tasks.tofu_data import QUESTIONS_PER_AUTHOR, _forget_rows

KINDS = ("original", "retrained", "endpoint", "bend", "evaluation")
SPLIT_BATCH = 256  # minibatch of whole-split passes (predict_proba, recompute_batchnorm, split_gradients)
STEP_BUDGET_S = 2.0  # time one training step only when the FLOP model expects it to take less than this here
TRIVIAL_FLOPS = 1e9  # a step this small is timed without asking the FLOP model first


# ----------------------------------------------------------------------------- what a job computes


@dataclass(frozen=True)
class Work:
    """What a job computes, in the units a calibration prices."""

    train_steps: float = 0.0  # optimiser steps (or gradient passes)
    train_examples: float = 0.0  # examples through forward + backward
    forward_batches: float = 0.0  # forward-only minibatches
    forward_examples: float = 0.0  # examples through a forward pass only
    decode_steps: float = 0.0  # greedy generation: one new token for every row of an evaluation batch

    def __add__(self, other: "Work") -> "Work":
        return Work(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def __mul__(self, times: float) -> "Work":
        return Work(*(a * times for a in dataclasses.astuple(self)))


def split_pass(examples: int, batch_size: int = SPLIT_BATCH, backward: bool = False) -> Work:
    """One pass over ``examples`` in minibatches: forward only, or forward + backward."""
    batches = math.ceil(examples / batch_size)
    if backward:
        return Work(train_steps=batches, train_examples=examples)
    return Work(forward_batches=batches, forward_examples=examples)


@dataclass(frozen=True)
class Sizes:
    """One (task, forget ratio): examples per split and what evaluating one model point reads."""

    train: int  # |D|
    retain: int  # |Dr|
    forget: int  # |Df|
    validation: int  # the task's validation split, never trained on: the pathway's forget target (TOFU: holdout)
    evaluation: Work  # one call of the task's evaluate()


def classifier_evaluation(test: int, retain: int, forget: int, batchnorm: bool) -> Work:
    """ClassificationTask.evaluate: BatchNorm re-estimated on Dr (if the model has any), then
    predictions on test, Dr and Df."""
    return (split_pass(retain) if batchnorm else Work()) + split_pass(test) + split_pass(retain) + split_pass(forget)


def tofu_evaluation(sets: list[tuple[int, int]], eval_batch: EvalBatch, max_new_tokens: int, forget: int) -> Work:
    """TofuTask.evaluate: per evaluation set of (rows, teacher-forced answers per row), the
    answer losses, and greedy answers of up to max_new_tokens; then the membership attacks' one
    pass over all ``forget`` rows of Df and as many held-out rows. Upper bounds: a generation batch
    stops once every row has ended, and each question runs once for all its answers, while this
    counts a whole question + answer example for each."""
    work = split_pass(2 * forget, eval_batch.forward)
    for rows, answers in sets:
        decode = Work(decode_steps=math.ceil(rows / eval_batch.generation) * max_new_tokens)
        work += split_pass(rows * answers, eval_batch.forward) + decode
    return work


def supervised_work(epochs: int, batch_size: int, examples: int) -> Work:
    """train_supervised: ``epochs`` passes over a split (the original on D, the retrained on Dr)."""
    return Work(train_steps=epochs * math.ceil(examples / batch_size), train_examples=epochs * examples)


def forget_steps(n_forget: int, batch_size: int, epochs: int, steps: int) -> tuple[int, int]:
    """(steps, forget examples) of ``train.unlearning_batches``: ``steps`` if set, else ``epochs`` passes."""
    per_pass = math.ceil(n_forget / batch_size)
    if steps:  # whole passes, then the first (full) batches of one more
        return steps, (steps // per_pass) * n_forget + (steps % per_pass) * batch_size
    return epochs * per_pass, epochs * n_forget


def unlearning_work(method: str, params, sizes: Sizes, curriculum: str = "none",
                    curriculum_params: CurriculumParams | None = None) -> Work:
    """One unlearning loop (an endpoint, or a Bezier bend with the fit's epochs and batch size).

    Per step: the forget batch, the retain batch if the method uses Dr, and the frozen
    teachers' forwards: BT's random net on the forget batch and the original on the retain
    batch; NPO's original on the forget batch. SU's saliency mask is one gradient over Df;
    an ordering curriculum reads the original's loss of every forget example once.
    """
    spec = METHODS[method]
    steps, forget = forget_steps(sizes.forget, params.batch_size, params.epochs, params.steps)
    retain = steps * params.retain_batch_size if spec.draws_retain(params) else 0
    work = Work(train_steps=steps, train_examples=forget + retain)
    if spec.uses_random_teacher:
        work += Work(forward_batches=2 * steps, forward_examples=forget + retain)
    elif spec.uses_original and spec.grad_mask is None:
        work += Work(forward_batches=steps, forward_examples=forget)
    if spec.grad_mask is not None:
        work += split_pass(sizes.forget, backward=True)
    if needs_original_losses(curriculum, curriculum_params):
        work += split_pass(sizes.forget)
    return work


def pathway_work(params, sizes: Sizes) -> Work:
    """jobs.build_pathway but its model evaluations: the original's accuracy on the validation split
    and Dr (the targets), tensor scores (a gradient over Dr and Df), ``epochs`` passes over Df in
    batches mixing Df and the retain subset, then the accuracy on Df and Dr at each of the
    ``select_points`` values of t and at t*, which t* is chosen on."""
    n_f, n_r = sizes.forget, sizes.retain
    subset = subset_size(n_r, params.retain_ratio)
    forget_size, retain_size = mixed_batch_sizes(params.batch_size, n_f, subset)
    steps = params.epochs * math.ceil(n_f / forget_size)
    baselines = split_pass(sizes.validation) + split_pass(n_r)
    scores = split_pass(n_r, params.batch_size, backward=True) + split_pass(n_f, params.batch_size, backward=True)
    selection = (split_pass(n_f) + split_pass(n_r)) * (params.select_points + 1)
    return (baselines + scores + Work(train_steps=steps, train_examples=params.epochs * n_f + steps * retain_size)
            + selection)


@dataclass(frozen=True)
class Job:
    """One artifact's share of the sweep, and what in the store says it is done already."""

    kind: str  # original | retrained | endpoint | bend | evaluation
    task: str
    work: Work
    done_by: tuple  # ("artifact", key), or ("references", task, retrained key): the original's evaluation
    points: int = 1  # evaluation: model points evaluated (a curve's interior points are one artifact)


def plan_jobs(plan: Plan, sizes: dict) -> list[Job]:
    """Every job of the plan with its work; ``sizes[(task, ratio)]`` gives each split's size.

    Evaluations: each retrained model and, per ratio, the original once; each endpoint once
    (a pathway endpoint also at its select_points values of t); each curve's interior points.
    """
    jobs = []
    first_ratio = {}
    for item in plan.retrained.values():
        first_ratio.setdefault(item.task, item.ratio)
    for item in plan.originals.values():
        opts = item.options
        work = supervised_work(opts.epochs, opts.batch_size, sizes[item.task, first_ratio[item.task]].train)
        jobs.append(Job("original", item.task, work, ("artifact", item.key)))
    for item in plan.retrained.values():
        opts, size = item.options, sizes[item.task, item.ratio]
        published = getattr(opts, "reference_model", "")  # a published retain-only model is loaded, not trained
        work = Work() if published else supervised_work(opts.epochs, opts.batch_size, size.retain)
        jobs += [Job("retrained", item.task, work, ("artifact", item.key)),
                 Job("evaluation", item.task, size.evaluation, ("artifact", item.key)),
                 Job("evaluation", item.task, size.evaluation, ("references", item.task, item.key))]
    for item in plan.endpoints.values():
        size = sizes[item.task, item.ratio]
        if item.source:
            work, points = pathway_work(item.hparams, size), 1 + item.hparams.select_points
        else:
            work, points = unlearning_work(item.method, item.hparams, size, item.curriculum, item.curriculum_params), 1
        jobs += [Job("endpoint", item.task, work, ("artifact", item.key)),
                 Job("evaluation", item.task, size.evaluation * points, ("artifact", item.key), points)]
    for curve in plan.curves.values():
        size = sizes[curve.task, curve.ratio]
        if curve.trained:
            params = bend_budget(curve.hparams, curve.fit)
            jobs.append(Job("bend", curve.task, unlearning_work(curve.objective, params, size, curve.curriculum,
                                                                curve.curriculum_params), ("artifact", bend_key(curve))))
        interior = max(curve.points - 2, 0)
        jobs.append(Job("evaluation", curve.task, size.evaluation * interior, ("artifact", curve.key), interior))
    return jobs


# ----------------------------------------------------------------------------- what a unit costs


@dataclass(frozen=True)
class Rates:
    """Seconds per unit of ``Work`` for one task's model on the calibration device."""

    train_step: float  # s per optimiser step beyond its examples (launches, the optimiser's update)
    train_example: float  # s per example through forward + backward
    forward_batch: float
    forward_example: float
    decode_step: float  # s per greedy decoding step of one evaluation batch
    source: str  # measured | flop model (counted) | flop model (assumed)
    detail: str  # how the numbers were obtained, for the person reading the estimate

    def seconds(self, work: Work) -> float:
        return (work.train_steps * self.train_step + work.train_examples * self.train_example
                + work.forward_batches * self.forward_batch + work.forward_examples * self.forward_example
                + work.decode_steps * self.decode_step)


def time_call(fn: Callable[[], object], device: torch.device, min_seconds: float = 0.2, max_calls: int = 10) -> float:
    """Seconds of the fastest of several calls of ``fn()`` after a warm-up (other processes only ever
    add time: a burst of theirs made a median 25x off on a shared 2-core machine); calls repeat until
    ``min_seconds`` have passed, at least twice."""
    def timed() -> float:
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed()
    times = [timed()]
    while sum(times) < min_seconds and len(times) < max_calls:
        times.append(timed())
    return min(times)


def linear_fit(small: tuple[int, float], large: tuple[int, float]) -> tuple[float, float]:
    """(s per batch, s per example) through two (batch size, seconds) timings, both >= 0."""
    (b_small, t_small), (b_large, t_large) = small, large
    per_example = max(0.0, (t_large - t_small) / (b_large - b_small)) if b_large > b_small else t_large / b_large
    return max(0.0, t_large - b_large * per_example), per_example


@dataclass(frozen=True)
class DeviceFlops:
    """FLOP/s this device reaches on a stand-in transformer, at one precision."""

    train: float  # forward + backward + AdamW step
    forward: float
    detail: str


def device_flops(placement: Placement) -> DeviceFlops:
    """Time a small GPT-2 built from a config (no download) and divide its counted FLOPs by the time.

    Its size follows the device: a matmul-bound width on a GPU, a few hundred ms on a CPU.
    """
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import GPT2Config, GPT2LMHeadModel

    cuda = placement.device.type == "cuda"
    width, layers, rows, length = (2048, 4, 8, 256) if cuda else (256, 2, 4, 128)
    torch.manual_seed(0)
    config = GPT2Config(n_layer=layers, n_embd=width, n_head=width // 64, vocab_size=512, n_positions=length,
                        bos_token_id=0, eos_token_id=0)
    model = placement.model(GPT2LMHeadModel(config))
    ids = torch.randint(512, (rows, length)).to(placement.device)  # (rows, length)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)  # lr 0: a real update that leaves weights put

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        with placement.autocast():
            logits = model(input_ids=ids).logits  # (rows, length, vocab)
        F.cross_entropy(logits.float().flatten(0, 1), ids.flatten()).backward()
        optimizer.step()

    def forward():
        with torch.no_grad(), placement.autocast():
            model(input_ids=ids)

    rates = []
    for fn in (train_step, forward):
        with FlopCounterMode(display=False) as counter:
            fn()
        rates.append(counter.get_total_flops() / time_call(fn, placement.device))
    return DeviceFlops(*rates, detail=f"{rates[0] / 1e9:.3g} GFLOP/s training, {rates[1] / 1e9:.3g} GFLOP/s "
                                      f"forward (a GPT-2 of {layers} x {width} built from a config, "
                                      f"{rows} x {length} tokens)")


def flop_rates(params: float, tokens: float, eval_batch: EvalBatch, flops: DeviceFlops, counted: bool) -> Rates:
    """6·P·T FLOPs to train an example, 2·P·T to run it forward, 2·P per row per decoded token;
    P counted from the model's config, or assumed (a hub checkpoint)."""
    origin = "counted from the config; too large to time here" if counted else "assumed"
    return Rates(train_step=0.0, train_example=6 * params * tokens / flops.train, forward_batch=0.0,
                 forward_example=2 * params * tokens / flops.forward,
                 decode_step=2 * params * eval_batch.generation / flops.forward,
                 source=f"flop model ({'counted' if counted else 'assumed'})",
                 detail=f"{params:.3g} parameters ({origin}) x {tokens:.3g} positions per example, at the device's "
                        f"FLOP/s")


@dataclass(frozen=True)
class EvalBatch:
    """An evaluation's minibatches on one device: rows per forward pass and prompts per greedy decoding step."""

    forward: int
    generation: int


def eval_batches(task, options, placement: Placement) -> EvalBatch:
    """An evaluation's minibatches on this device: TOFU's (auto: by device), else SPLIT_BATCH (no generation)."""
    if task.family != "tofu":
        return EvalBatch(SPLIT_BATCH, SPLIT_BATCH)
    return EvalBatch(tofu.eval_batch_size(options, placement),
                     tofu.eval_batch_size(options, placement, generation=True))


def measured_rates(task, options, data, placement: Placement) -> Rates:
    """Time the task's own model on a random sample of its own training rows.

    Training steps (forward, backward, AdamW) at the original's batch size and a quarter of
    it, forwards at the evaluation batch and an eighth of it: two sizes give a cost per
    batch and one per example. TOFU: greedy answers to the forget questions, per decoding step.
    """
    model = task.new_model(options, seed=0, placement=placement)
    train = data.split("train")
    n = batch_length(train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))

    def batch(size: int) -> dict:
        return placement.batch(trim_padding(select(train, order[:size])))

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0)

    def train_step(minibatch: dict) -> None:
        optimizer.zero_grad(set_to_none=True)
        with placement.autocast():
            loss = task.example_losses(model, minibatch).mean()
        loss.float().backward()
        optimizer.step()

    def forward(minibatch: dict) -> None:
        with torch.no_grad(), placement.autocast():
            task.example_losses(model, minibatch)

    def timings(step, largest: int, divisor: int) -> tuple[float, float]:
        sizes = (max(1, largest // divisor), largest)
        return linear_fit(*[(size, time_call(lambda b=batch(size): step(b), placement.device)) for size in sizes])

    model.train()
    train_step_s, train_example_s = timings(train_step, min(options.batch_size, n), 4)
    model.eval()
    eval_batch = eval_batches(task, options, placement)
    forward_batch_s, forward_example_s = timings(forward, min(eval_batch.forward, n), 8)
    decode_s = decode_step_seconds(model, data, eval_batch.generation, placement) if task.family == "tofu" else 0.0
    detail = (f"train {1e3 * train_example_s:.3g} ms/example + {1e3 * train_step_s:.3g} ms/step, forward "
              f"{1e3 * forward_example_s:.3g} ms/example + {1e3 * forward_batch_s:.3g} ms/batch"
              + (f", greedy decoding {1e3 * decode_s:.3g} ms/step" if decode_s else ""))
    return Rates(train_step_s, train_example_s, forward_batch_s, forward_example_s, decode_s, "measured", detail)


def decode_step_seconds(model, data, generation_batch: int, placement: Placement, new_tokens: int = 8) -> float:
    """Seconds per greedy decoding step: TOFU's own generation on its forget questions, a few tokens each."""
    short = dataclasses.replace(data, options=dataclasses.replace(data.options, max_new_tokens=new_tokens))
    rows = len(tofu.eval_rows(data, "forget"))
    steps = math.ceil(rows / generation_batch) * new_tokens
    return time_call(lambda: tofu.generate_answers(model, short, "forget", placement), placement.device) / steps


# ----------------------------------------------------------------------------- what is known offline


@dataclass(frozen=True)
class Checkpoint:
    """What the FLOP model assumes of a hub checkpoint it cannot download here."""

    params: float  # parameters, from the model card
    tokens: Callable[[object], float]  # positions each weight is applied at per example, from the task options
    batchnorm: bool  # whether its evaluation re-estimates BatchNorm statistics (one more pass over Dr)
    note: str


TOFU_TOKENS_PER_ROW = 51  # question + answer of a TOFU row (DESIGN.md 3b)
RESNET18_POSITIONS = 1.82e9 / 11.7e6  # multiply-adds / parameters at 224x224 (torchvision): ~156

VILT_B32 = Checkpoint(87e6, lambda o: 2 * (o.max_length + (o.image_size // 32) ** 2 + 1), False,
                      "vilt-b32: 87e6 parameters, per image pair 2 x (text tokens + (image_size/32)^2 patches + 1)")

# The checkpoints sweeps/full_grid.yaml names.
CHECKPOINTS = {
    "microsoft/phi-1_5": Checkpoint(1.42e9, lambda o: TOFU_TOKENS_PER_ROW, False,
                                    "phi-1.5: 1.42e9 parameters, TOFU rows ~51 tokens"),
    "open-unlearning/tofu_Llama-2-7b-chat-hf_full": Checkpoint(
        6.74e9, lambda o: TOFU_TOKENS_PER_ROW, False,
        "llama-2-7b: 6.74e9 parameters, TOFU rows ~51 tokens (LoRA counted as full training: an upper bound)"),
    "microsoft/resnet-18": Checkpoint(11.7e6, lambda o: RESNET18_POSITIONS * (o.image_size / 224) ** 2, True,
                                      "resnet-18: 11.7e6 parameters, 1.82e9 multiply-adds at 224x224, scaled to "
                                      "image_size^2"),
    "dmis-lab/biobert-base-cased-v1.2": Checkpoint(108e6, lambda o: o.max_length, False,
                                                   "biobert-base-cased: 108e6 parameters, rows padded to max_length"),
    "dandelin/vilt-b32-finetuned-nlvr2": VILT_B32,
    "dandelin/vilt-b32-mlm": VILT_B32,
}

# TOFU's configs (rows; the same in ../shared/data/tofu): full, retain_perturbed, real authors, world facts.
TOFU_ROWS = {"full": 4000, "retain_perturbed": 400, "real_authors": 100, "world_facts": 117}
TOFU_AUTHORS = 200
# Test rows of MU-Bench's tasks, not readable offline: CIFAR-10's test split; DDI-2013's test
# pairs; NLVR2's test-P split (published sizes; the hub copies may differ).
MUBENCH_TEST_ROWS = {"cifar10": 10_000, "ddi": 5_716, "nlvr2": 6_967}
MUBENCH_TRAIN_ROWS = {"cifar10": 50_000}  # used when no forget list says it


def _on_disk(name: str) -> bool:
    return bool(name) and Path(name).expanduser().exists()


def data_offline(options) -> bool:
    """Whether the task's data is on this machine: digits always; TOFU unless from the hub; MU-Bench a folder."""
    if isinstance(options, tofu.Options):
        return options.source != "hub" or _on_disk(options.path)
    return not hasattr(options, "dataset") or _on_disk(options.dataset)


def model_offline(options) -> bool:
    """Whether the task's model is built here: from a config (digits, tiny ...) or from a local folder."""
    model = getattr(options, "model", "tiny")
    return model in ("tiny", *tofu.TINY_MODELS) or _on_disk(model)


def assumed_sizes(task_name: str, options, ratio: float, path: str, batchnorm: bool, eval_batch: EvalBatch) -> Sizes:
    """Split sizes without reading the data: TOFU's known configs, MU-Bench's forget lists."""
    if isinstance(options, tofu.Options):
        forget = _forget_rows(TOFU_AUTHORS, ratio)  # TOFU's rule: whole authors, 20 questions each
        train = TOFU_ROWS["full"]
        if options.retain_authors:
            train = options.retain_authors * QUESTIONS_PER_AUTHOR + _forget_rows(TOFU_AUTHORS, options.max_ratio)
        cap = options.eval_size
        sets = [(min(cap, forget), 7), (min(cap, TOFU_ROWS["retain_perturbed"]), 7),  # answer, paraphrase, 5 perturbed
                (min(cap, TOFU_ROWS["real_authors"]), 4),  # answer, 3 perturbed
                (min(cap, TOFU_ROWS["world_facts"]), 4)]
        evaluation = tofu_evaluation(sets, eval_batch, options.max_new_tokens, forget)
        return Sizes(train, train - forget, forget, forget, evaluation)
    index_file = options.forget_index_file
    if index_file:
        listed = sum(1 for line in open(index_file) if line.strip())  # MU-Bench's list covers 10 % of the rows
        train, forget = 10 * listed, max(1, round(listed * ratio / 10))
    elif task_name in MUBENCH_TRAIN_ROWS:
        train, forget = MUBENCH_TRAIN_ROWS[task_name], None
    else:
        raise SpecError(f"{path}.options.forget_index_file", index_file,
                        "the estimate reads |D| from MU-Bench's forget list when the dataset is not on this machine: "
                        "name the list (10 x its lines = |D|)")
    if options.max_train:
        train = min(train, options.max_train)
    validation = validation_size(train, options.val_fraction)  # training rows held out of D
    train -= validation
    if forget is None:  # seeded: r % of D (classification.forget_indices)
        forget = max(1, round(train * ratio / 100))
    test = MUBENCH_TEST_ROWS[task_name]
    if options.max_test:
        test = min(test, options.max_test)
    return Sizes(train, train - forget, forget, validation,
                 classifier_evaluation(test, train - forget, forget, batchnorm))


def measured_sizes(task, options, data, batchnorm: bool, eval_batch: EvalBatch) -> Sizes:
    """Split sizes of loaded data; a TOFU evaluation from its evaluation rows."""
    if task.family == "tofu":
        sets = [(len(tofu.eval_rows(data, name)),
                 1 + (name in tofu.PARAPHRASED) + len(tofu.eval_rows(data, name)[0]["perturbed_answer"]))
                for name in tofu.EVAL_ROWS]
        rows = data.rows
        return Sizes(len(rows.train), len(rows.retain), len(rows.forget), len(rows.forget),
                     tofu_evaluation(sets, eval_batch, options.max_new_tokens, len(rows.forget)))
    counts = {name: len(data.split(name)["y"]) for name in ("train", "retain", "forget", "test", "validation")}
    return Sizes(counts["train"], counts["retain"], counts["forget"], counts["validation"],
                 classifier_evaluation(counts["test"], counts["retain"], counts["forget"], batchnorm))


# ----------------------------------------------------------------------------- one task, then the sweep


@dataclass
class TaskCost:
    """A task's sizes per ratio and its rates, and where each came from."""

    sizes: dict  # ratio -> Sizes
    rates: Rates
    assumptions: list = field(default_factory=list)


def task_cost(task_spec, path: str, placement: Placement, flops: Callable[[Placement], DeviceFlops]) -> TaskCost:
    """Sizes and rates of one task of the sweep: its own model timed on its own data where both are
    here and a step is cheap enough; the FLOP model with P counted from the config where the model
    is too large to time; the FLOP model with P and sizes assumed where either is on the hub."""
    task, options = TASKS[task_spec.name], task_spec.options
    eval_batch = eval_batches(task, options, placement)
    if not (data_offline(options) and model_offline(options)):
        return assumed_cost(task_spec, path, eval_batch, flops(placement))
    first = task.load(options, task_spec.ratios[0])
    data = {r: ratio_data(task, options, first, r) for r in task_spec.ratios}
    with torch.device("meta"):  # the architecture without its memory: parameter count and BatchNorm
        skeleton = task.new_model(options, seed=0)
    params = sum(p.numel() for p in skeleton.parameters())
    batchnorm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in skeleton.modules())
    sizes = {r: measured_sizes(task, options, d, batchnorm, eval_batch) for r, d in data.items()}
    lengths = row_lengths(first.split("train"))  # text: tokens per row; images: None, always timed
    tokens = float(lengths.float().mean()) if lengths is not None else None
    step_flops = 6 * params * (tokens or 0) * options.batch_size
    if tokens is None or step_flops < TRIVIAL_FLOPS or step_flops / flops(placement).train < STEP_BUDGET_S:
        return TaskCost(sizes, measured_rates(task, options, first, placement))
    return TaskCost(sizes, flop_rates(params, tokens, eval_batch, flops(placement), counted=True))


def ratio_data(task, options, first, ratio: float):
    """The splits of one ratio from those of the first: a classifier's arrays re-cut, not loaded and
    decoded again (a local image dataset takes long to decode); TOFU's rows loaded (cheap)."""
    if task.family == "tofu":
        return task.load(options, ratio)
    forget, retain = task.forget_split(options, len(first.train["y"]), ratio)
    return dataclasses.replace(first, forget_idx=forget, retain_idx=retain)


def assumed_cost(task_spec, path: str, eval_batch: EvalBatch, flops: DeviceFlops) -> TaskCost:
    """The FLOP model for a hub checkpoint from ``CHECKPOINTS``, split sizes from what is known offline."""
    options, model = task_spec.options, getattr(task_spec.options, "model", "")
    if model not in CHECKPOINTS:
        if model_offline(options):  # built here, but timed (and a text model's tokenizer trained) on data that is not
            key = "source" if isinstance(options, tofu.Options) else "dataset"
            raise SpecError(f"{path}.options.{key}", getattr(options, key),
                            f"the estimate times {model} on the task's data, which is not on this machine: use a "
                            "local folder (TOFU: source local or synthetic)")
        raise SpecError(f"{path}.options.model", model,
                        "the estimate cannot read this model offline: use a model built from a config (tiny, "
                        f"tiny-gpt2, ...), a local folder, or one of {', '.join(CHECKPOINTS)}")
    known = CHECKPOINTS[model]
    sizes = {r: assumed_sizes(task_spec.name, options, r, path, known.batchnorm, eval_batch) for r in task_spec.ratios}
    split_source = ("TOFU's configs (4000 rows in full)" if isinstance(options, tofu.Options) else
                    f"10 x the forget list's lines, {MUBENCH_TEST_ROWS[task_spec.name]} test rows (published size)")
    return TaskCost(sizes, flop_rates(known.params, known.tokens(options), eval_batch, flops, counted=False),
                    [f"{task_spec.name}: {known.note}; split sizes from {split_source}"])


def stored(store: Store | None, sweep: str, done_by: tuple) -> bool:
    """Whether what ``done_by`` names is in the store already."""
    if store is None:
        return False
    if done_by[0] == "artifact":
        return store.has_artifact(done_by[1])
    return store.has_table(sweep, "references", done_by[2])


def open_store(storage: str) -> tuple[Store | None, str]:
    """The store to look for finished artifacts in, or None and why it cannot be read."""
    try:
        store = Store(storage)
        store.has_artifact("-")  # reachable at all
        return store, ""
    except (OSError, ValueError) as exc:
        return None, f"storage {storage} not readable ({type(exc).__name__}: {exc}): nothing counted as done"


def busy_cpu() -> str:
    """A warning when other processes held the CPU during calibration (their threads slow every timing)."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    return f"the CPU was busy (load average {load:.1f} on {cores} cores): timings may run high" if load > cores else ""


def estimate(spec: SweepSpec, plan: Plan, storage: str, placement: Placement | None = None) -> dict:
    """Device-hours per job kind still to run, the calibration behind them, and what was assumed."""
    placement = placement or Placement()
    device_rates: dict = {}  # precision -> DeviceFlops

    def flops(place: Placement) -> DeviceFlops:  # measured once per precision, only when some task needs it
        if place.precision not in device_rates:
            device_rates[place.precision] = device_flops(place)
        return device_rates[place.precision]

    costs = {t.name: task_cost(t, f"tasks[{i}]", placement.with_precision(t.precision), flops)
             for i, t in enumerate(spec.tasks)}
    sizes = {(name, ratio): s for name, cost in costs.items() for ratio, s in cost.sizes.items()}
    store, store_note = open_store(storage)
    # stored_hours: the training time done jobs recorded; stored_estimate_hours: what this calibration says of them
    kinds = {kind: {"jobs": 0, "done": 0, "device_hours": 0.0, "stored_hours": 0.0, "stored_estimate_hours": 0.0,
                    "sources": []} for kind in KINDS}
    for job in plan_jobs(plan, sizes):
        row, rates = kinds[job.kind], costs[job.task].rates
        hours = rates.seconds(job.work) / 3600
        row["jobs"] += job.points
        if rates.source not in row["sources"]:
            row["sources"].append(rates.source)
        if not stored(store, spec.name, job.done_by):
            row["device_hours"] += hours
            continue
        row["done"] += job.points
        meta = store.read_meta(job.done_by[1]) if job.kind != "evaluation" else {}
        if "train_seconds" in meta:
            row["stored_hours"] += meta["train_seconds"] / 3600
            row["stored_estimate_hours"] += hours
    cuda = placement.device.type == "cuda"
    return {"device": f"cuda ({torch.cuda.get_device_name(placement.device)})" if cuda
            else f"cpu ({torch.get_num_threads()} threads)", "busy": "" if cuda else busy_cpu(),
            "device_flops": {precision: f.detail for precision, f in device_rates.items()},
            "kinds": kinds, "total_device_hours": sum(k["device_hours"] for k in kinds.values()),
            "calibration": {t.name: {"precision": t.precision, **dataclasses.asdict(costs[t.name].rates)}
                            for t in spec.tasks},
            "assumptions": [a for cost in costs.values() for a in cost.assumptions],
            "storage": storage, "storage_note": store_note,
            "excluded": "job start-up (model build, weight loading, Ray worker groups) and data loading"}


def readable(hours: float) -> str:
    """Hours as a person reads them: seconds, minutes, hours or days."""
    seconds = hours * 3600
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def format_estimate(sweep: str, result: dict) -> str:
    """The table for the terminal: one line per job kind, a total, then how it was priced."""
    lines = [f"sweep {sweep}: estimated device time, calibrated on {result['device']}",
             f"{'job kind':<12}{'jobs':>7}{'done':>7}{'device-hours':>14}  {'(readable)':<11} source"]
    for kind, row in result["kinds"].items():
        lines.append(f"{kind:<12}{row['jobs']:>7}{row['done']:>7}{row['device_hours']:>14.4g}  "
                     f"{readable(row['device_hours']):<11} {', '.join(row['sources'])}")
    total = result["total_device_hours"]
    jobs, done = (sum(r[k] for r in result["kinds"].values()) for k in ("jobs", "done"))
    lines.append(f"{'total':<12}{jobs:>7}{done:>7}{total:>14.4g}  {readable(total):<11}")
    stored_hours, said = (sum(row[key] for row in result["kinds"].values())
                          for key in ("stored_hours", "stored_estimate_hours"))
    if done:
        lines.append(f"done: {done} already in {result['storage']}, not counted above; their training took "
                     f"{readable(stored_hours)} where this calibration says {readable(said)} (the stored time also "
                     f"holds model builds and whatever shared the device)")
    lines += [note for note in (result["storage_note"], result["busy"]) if note]
    lines.append("calibration:")
    lines += [f"  {task} ({c['precision']}, {c['source']}): {c['detail']}" for task, c in result["calibration"].items()]
    lines += [f"  device at {precision}: {detail}" for precision, detail in result["device_flops"].items()]
    if result["assumptions"]:
        lines.append("assumed (not readable offline):")
        lines += [f"  {a}" for a in result["assumptions"]]
    lines.append(f"not included: {result['excluded']}; jobs that run side by side share the wall clock")
    return "\n".join(lines)
