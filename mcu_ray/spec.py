"""Sweep YAML -> typed, validated spec.

Everything a sweep file can say is checked here, before Ray starts: an error names
the field path (``tasks[0].ratios[1]``), the value found and what is allowed, so a
typo costs seconds, not a failed grid hours later.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mcu_ray.errors import (FAILED, Problems, SpecError, build_dataclass, check_value, did_you_mean, join_path,
                            reject_unknown_keys)

SETTINGS = (
    "Rand", "Rand-CL", "Rand-SO", "CL-Non-CL", "FO-SO",
    "Met", "Met-CL", "Met-SO", "Met-CL-Non-CL", "Met-FO-SO",
)
CURVES = ("linear", "bezier", "polychain")  # polychain: straight segments through trained bends
DEFAULT_CURVES = ("linear", "bezier")  # the paper's two


@dataclass(frozen=True)
class ScalingSpec:
    """Ray Train ScalingConfig for every training job (original, retrained, endpoints, bends, pathway)."""

    num_workers: int = 0  # 0 = Train's local mode: the loop runs in the trial's own process; >1: data parallel
    use_gpu: bool = False
    resources_per_worker: dict = field(default_factory=dict)  # e.g. {CPU: 4, GPU: 1}
    grad_accum: int = 1  # micro-batches per worker per step: a step's batch is still the method's batch_size
    strategy: str = "ddp"  # ddp: each worker the whole model | fsdp: model, gradients, optimiser state sharded


@dataclass(frozen=True)
class ResourcesSpec:
    """How the grid is laid onto the cluster."""

    max_concurrent_trials: int = 2  # cells in flight at once
    # Logical CPUs a trial holds. Kept small on purpose: a trial mostly waits on its Train
    # jobs and evaluation tasks, and trials holding every CPU would starve those tasks.
    trial_cpus: float = 0.25
    eval_cpus: float = 1.0  # per t-point evaluation task
    eval_gpus: float = 0.0
    eval_points_per_task: int = 1  # t-points per evaluation task (more: less overhead for small models)
    max_failures: int = 1  # Tune retries of a failed cell
    train: ScalingSpec = field(default_factory=ScalingSpec)


@dataclass(frozen=True)
class Tolerances:
    """How far a metric may stray from the chord before it counts as a barrier, per metric family.

    Read when verdicts are drawn (report, ``mcu_ray.load``), never when results are computed: a
    changed tolerance re-decides every stored deviation without re-running anything.
    """

    loss: float = 0.01  # nats; retain and forget loss, and so the MCU verdict (paper Eq. 3/4)
    accuracy: float = 0.01  # absolute, in fractions of examples (0.01 = 1 percentage point)
    score: float = 0.01  # absolute, on 0-1 scores: ZRF, ROUGE-L recall, probabilities, truth ratio, model utility
    # Forget Quality is a p-value: a barrier is the curve falling below this significance level
    # while neither endpoint does (TOFU's and open-unlearning's 0.05 line)
    forget_quality: float = 0.05

    def check(self, path: str) -> None:
        for family in ("loss", "accuracy", "score"):
            if getattr(self, family) < 0:
                raise SpecError(f"{path}.{family}", getattr(self, family), "expected a non-negative number")
        if not 0 < self.forget_quality < 1:
            raise SpecError(f"{path}.forget_quality", self.forget_quality,
                            "expected a significance level strictly between 0 and 1 (TOFU: 0.05)")


def parse_tolerance(raw: Any, path: str = "tolerance") -> Tolerances:
    """A number (the loss tolerance, the MCU verdict's; the other families keep their defaults) or a
    mapping family -> value (``{loss: 0.05, accuracy: 0.02, forget_quality: 0.01}``)."""
    if isinstance(raw, Tolerances):
        return raw
    if isinstance(raw, dict):
        tolerances = build_dataclass(Tolerances, raw, path)
        tolerances.check(path)
        return tolerances
    loss = check_value(raw, float, path)
    if loss < 0:
        raise SpecError(path, raw, "expected a non-negative number (loss units), or a mapping per metric family: "
                                   "loss, accuracy, score, forget_quality")
    return Tolerances(loss=loss)


T_SAMPLINGS = ("arc_length", "uniform", "normal")
LR_SCALES = ("bend_weight", "none")


@dataclass(frozen=True)
class CurveFitSpec:
    """How a Bezier bend theta_12 trains.

    By default as the MCU authors' code does (CLU-UML/MU-Bench ``trainer/base.py:123-158``):
    with the first endpoint's own objective, data, optimiser, curriculum and budget (its
    epochs or steps, learning rate, batch sizes, weight decay), one t per step. A budget
    of the curve's own is opt-in: set ``epochs``, ``lr`` or ``batch_size`` here.
    """

    epochs: int = 0  # 0 = the method's own budget (its epochs, or its steps); > 0: passes over Df
    lr: float = 0.0  # 0 = the method's learning rate
    batch_size: int = 0  # 0 = the method's forget batch size
    # arc_length: t ~ ||phi'(t)||, the paper's length-weighted objective (Appendix 9, Eqs. 5-8);
    # uniform: t ~ U(0, 1) (Garipov et al. 2018); normal: t ~ N(0.5, 0.1) clamped (the authors' code)
    t_sampling: str = "arc_length"
    # bend_weight: the authors' step, dL/dphi(t) at lr * 2t(1-t) (the bend's weight in phi(t));
    # none: the bend's own gradient at lr
    lr_scale: str = "bend_weight"

    def check(self, path: str) -> None:
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 0:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected 0 (the method's) or an integer >= 1")
        if self.lr < 0:
            raise SpecError(f"{path}.lr", self.lr, "expected 0 (the method's) or a positive learning rate")
        if self.t_sampling not in T_SAMPLINGS:
            raise SpecError(f"{path}.t_sampling", self.t_sampling, f"allowed: {', '.join(T_SAMPLINGS)}")
        if self.lr_scale not in LR_SCALES:
            raise SpecError(f"{path}.lr_scale", self.lr_scale, f"allowed: {', '.join(LR_SCALES)}")


TRACKERS = ("none", "mlflow", "tensorboard")


@dataclass(frozen=True)
class TrackingSpec:
    """Where every cell (a Tune trial) and its metrics are logged besides the result tables, through
    Ray Tune's logger callbacks (``mcu_ray.tracking``).

    Read by the driver only: no artifact key, row or spec hash depends on it, so turning it on
    for a sweep already run changes nothing stored.
    """

    kind: str = "none"  # none | mlflow | tensorboard
    # mlflow: any tracking URI (sqlite:///mlflow.db, http://host:5000); tensorboard: a log folder;
    # "" = under the sweep's storage, <storage>/<sweep>/mlruns (a file: store) or <storage>/<sweep>/tensorboard
    uri: str = ""
    experiment: str = ""  # the MLflow experiment; "" = the sweep's name

    def location(self, storage: str, sweep: str) -> str:
        """The tracking URI (mlflow) or log folder (tensorboard) this sweep writes to."""
        if self.uri:
            return self.uri
        folder = _local_folder(storage) / sweep / ("mlruns" if self.kind == "mlflow" else "tensorboard")
        return folder.as_uri() if self.kind == "mlflow" else str(folder)


def _local_folder(storage: str) -> Path:
    """``storage`` as an absolute local folder; a SpecError for a remote one (s3://, gs://...)."""
    if storage.startswith("file://"):
        storage = storage[len("file://"):]
    if "://" in storage:
        raise SpecError("tracking.uri", None, f"storage {storage} is not a local folder, where tracking writes by "
                                              f"default: give tracking.uri (an MLflow tracking server, or a local "
                                              f"folder for TensorBoard)")
    return Path(storage).absolute()


def parse_tracking(raw: Any, path: str = "tracking") -> TrackingSpec:
    """A tracker's name (``mlflow``, ``tensorboard``; ``none`` or left out: off) or a mapping
    ``{kind: mlflow, uri: http://host:5000, experiment: my-grid}``."""
    if raw is None:
        return TrackingSpec()
    if not isinstance(raw, (str, dict)):
        raise SpecError(path, raw, f"expected a tracker's name ({', '.join(TRACKERS)}) or a mapping "
                                   f"{{kind: mlflow, uri: ..., experiment: ...}}")
    tracking = TrackingSpec(kind=raw) if isinstance(raw, str) else build_dataclass(TrackingSpec, raw, path)
    if tracking.kind not in TRACKERS:
        raise SpecError(path if isinstance(raw, str) else join_path(path, "kind"), tracking.kind,
                        f"unknown tracker{did_you_mean(tracking.kind, TRACKERS)}; allowed: {', '.join(TRACKERS)}")
    if tracking.kind == "none" and tracking.uri:
        raise SpecError(join_path(path, "uri"), tracking.uri, "nothing is tracked with kind none: set kind to mlflow "
                                                          "or tensorboard, or drop uri")
    if tracking.kind != "mlflow" and tracking.experiment:
        raise SpecError(join_path(path, "experiment"), tracking.experiment, "only MLflow groups runs in experiments: "
                                                                        "set kind to mlflow, or drop experiment")
    return tracking


@dataclass(frozen=True)
class TaskSpec:
    name: str
    ratios: tuple  # forget ratios in percent, each in (0, 100)
    methods: tuple  # registry keys of unlearning methods
    options: object = None  # the task's frozen Options, validated by the task
    hparams: dict = field(default_factory=dict)  # method -> its resolved Knobs (mcu_ray.methods)
    curve_fit: CurveFitSpec = field(default_factory=CurveFitSpec)
    settings: tuple = ()  # this task's settings; the sweep's when left out
    precision: str = "auto"  # fp32 | bf16-mixed | bf16; auto: the sweep's (resolved when parsed)
    from_search: tuple = ()  # methods whose hparams say from_search: true (the search section must tune them)


@dataclass(frozen=True)
class SweepSpec:
    name: str
    tasks: tuple
    settings: tuple = ("Rand", "Met")
    seeds: tuple = (0,)
    curves: tuple = DEFAULT_CURVES
    bends: int = 1  # trained control points of a bezier / polychain curve (1: the paper's quadratic Bezier)
    points: int = 16  # evaluated t values, equally spaced in [0, 1] (paper: 16)
    # a chord deviation above this is a barrier (absorbs evaluation noise): a number (losses, so
    # the MCU verdict) or a mapping per metric family; read at report time only (Tolerances)
    tolerance: Tolerances = field(default_factory=Tolerances)
    storage: str = "./mcu_runs"
    # fp32 | bf16-mixed | bf16 | auto (bf16-mixed when training or evaluation asks for GPUs, else fp32);
    # a task's own `precision` overrides it. Part of every artifact's key.
    precision: str = "auto"
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)  # off by default; never part of a key or hash
    # hyper-parameter search run before the grid (mcu_ray.search_spec.SearchSpec); the grid then trains the
    # searched methods with the chosen values
    search: Any = None


# ----------------------------------------------------------------------------- helpers


def _list(raw: Any, path: str, *, nonempty: bool = True) -> list:
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list):
        raise SpecError(path, raw, "expected a list")
    if nonempty and not raw:
        raise SpecError(path, raw, "expected at least one entry")
    return raw


def _unique(items: list, path: str) -> None:
    seen = set()
    for i, item in enumerate(items):
        if item in seen:
            raise SpecError(join_path(path, i), item, "duplicate entry; list each value once")
        seen.add(item)


def _choices(raw: Any, path: str, allowed) -> tuple:
    items = _list(raw, path)
    for i, item in enumerate(items):
        if item not in allowed:
            raise SpecError(join_path(path, i), item, f"unknown{did_you_mean(item, allowed)}; allowed: {', '.join(allowed)}")
    _unique(items, path)
    return tuple(items)


# ----------------------------------------------------------------------------- parsing


def parse_spec(raw: Any, *, base_dir: Path | None = None) -> SweepSpec:
    """Validate a parsed YAML document into a SweepSpec.

    Raises SpecError, or SpecErrors listing every independent problem: each top-level
    key, each task block and each method's hyper-parameters are checked even when
    another one is wrong; a check that needs a wrong value (a task's methods when its
    name is unknown) is skipped.
    """
    from mcu_ray import methods as method_registry
    from mcu_ray import tasks as task_registry

    if not isinstance(raw, dict):
        raise SpecError("", raw, "a sweep file is a mapping with keys name, tasks, settings, ...")
    problems = Problems()
    check = problems.attempt
    top = {k: raw[k] for k in raw if k not in ("tasks", "resources")}
    check(reject_unknown_keys, raw, [f.name for f in dataclasses.fields(SweepSpec)], "")
    name = check(_name, raw.get("name"))
    settings = check(_choices, top.get("settings", list(SweepSpec.settings)), "settings", SETTINGS)
    curves = check(_choices, top.get("curves", list(DEFAULT_CURVES)), "curves", CURVES)
    bends = check(_at_least, top.get("bends", SweepSpec.bends), "bends", 1,
                  "expected an integer >= 1 (1: the quadratic Bezier curve of the paper)")
    seeds = check(_seeds, top.get("seeds", [0]))
    points = check(_at_least, top.get("points", 16), "points", 3, "expected at least 3 evaluated points (the paper uses 16)")
    tolerance = check(parse_tolerance, top.get("tolerance", {}), "tolerance")
    storage = check(check_value, top.get("storage", SweepSpec.storage), str, "storage")
    resources = check(_parse_resources, raw.get("resources"), "resources")
    tracking = check(parse_tracking, top.get("tracking"))
    precision = check(_precision, top.get("precision", "auto"), "precision", resources)

    tasks = []
    if "tasks" not in raw:
        problems.errors.append(SpecError("tasks", None, "this field is required: a list of tasks, e.g. "
                                                        "[{name: digits, ratios: [2], methods: [ga, rl]}]"))
    else:
        raw_tasks = check(_list, raw["tasks"], "tasks")
        for i, raw_task in enumerate([] if raw_tasks is FAILED else raw_tasks):
            tasks.append(check(_parse_task, raw_task, f"tasks[{i}]", settings, precision, resources, task_registry,
                               method_registry, base_dir))
        # a failed task is unique here: its name is not known
        check(_unique, [object() if t is FAILED else t.name for t in tasks], "tasks")
    search = None
    if raw.get("search") is not None:
        from mcu_ray.search_spec import parse_search

        search = check(parse_search, raw["search"], tasks)
    check(_check_from_search, tasks, search)
    problems.raise_any()
    return SweepSpec(name=name, tasks=tuple(tasks), settings=settings, seeds=seeds, curves=curves,
                     bends=bends, points=points, tolerance=tolerance, storage=storage, precision=precision, resources=resources,
                     tracking=tracking, search=search)


def _check_from_search(tasks: list, search) -> None:
    """Every ``from_search: true`` names a (task, method) the search section tunes."""
    if search is FAILED:  # reported already
        return
    problems = Problems()
    for i, task in enumerate(tasks):
        if task is FAILED:
            continue
        for method in task.from_search:
            if method not in (search.space.get(task.name, {}) if search else {}):
                problems.errors.append(SpecError(f"tasks[{i}].hparams.{method}.from_search", True,
                                                 f"no search space for {task.name}/{method}: add search.space."
                                                 f"{task.name}.{method}, or drop from_search"))
    problems.raise_any()


def _name(name) -> str:
    if name is None:
        raise SpecError("name", None, "this field is required: the sweep's name, used as its folder under storage")
    name = check_value(name, str, "name")
    if not all(c.isalnum() or c in "-_." for c in name):
        raise SpecError("name", name, "use letters, digits, '-', '_' and '.' only (it becomes a folder name)")
    return name


def _at_least(value, path: str, minimum: int, allowed: str) -> int:
    if check_value(value, int, path) < minimum:
        raise SpecError(path, value, allowed)
    return value


MAX_SEEDS = 1000  # seeds per sweep: each one is the whole grid again
SEED_LIMIT = 2**31  # with what the plan adds (seed + 1: the second endpoint), within NumPy's 32-bit seeds


def _seeds(raw) -> tuple:
    seeds = _list(raw, "seeds")
    if len(seeds) > MAX_SEEDS:
        raise SpecError("seeds", f"{len(seeds)} seeds", f"expected at most {MAX_SEEDS:,} seeds (each one is the "
                                                        f"whole grid again)")
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
            raise SpecError(f"seeds[{i}]", seed, "expected a non-negative integer below 2**31")
    _unique(seeds, "seeds")
    return tuple(seeds)


def _precision(value, path: str, resources) -> str:
    """A precision by name; ``auto`` is bf16-mixed when the sweep asks for GPUs, else fp32
    (FAILED resources: the file is refused anyway, fp32 stands in)."""
    from mcu_ray.placement import PRECISIONS  # imported when parsing, as the registries are: placement needs torch

    if value == "auto":
        if resources is FAILED:
            return "fp32"
        return "bf16-mixed" if resources.train.use_gpu or resources.eval_gpus > 0 else "fp32"
    if value not in PRECISIONS:
        raise SpecError(path, value, f"unknown precision{did_you_mean(value, PRECISIONS)}; allowed: auto, "
                                     f"{', '.join(PRECISIONS)}")
    return value


def _check_shards(task: TaskSpec, resources: ResourcesSpec, path: str) -> None:
    """Every global batch must give each worker's micro-batch at least one example."""
    shards = max(1, resources.train.num_workers) * resources.train.grad_accum
    sizes = {f"{path}.curve_fit.batch_size": task.curve_fit.batch_size} if task.curve_fit.batch_size else {}
    sizes |= {f"{path}.hparams.{m}.batch_size": h.params.batch_size for m, h in task.hparams.items()}
    sizes |= {f"{path}.options.batch_size": task.options.batch_size} if hasattr(task.options, "batch_size") else {}
    problems = Problems()
    for field_path, size in sizes.items():
        if size < shards:
            problems.errors.append(SpecError(field_path, size, f"a batch is split over num_workers x grad_accum = "
                                                               f"{shards} micro-batches: expected at least {shards}"))
    problems.raise_any()


def _parse_task(raw, path, settings, precision, resources, task_registry, method_registry, base_dir) -> TaskSpec:
    """One task block; ``settings``, ``precision`` and ``resources`` are the sweep's (FAILED when wrong there)."""
    if not isinstance(raw, dict):
        raise SpecError(path, raw, "expected a mapping with keys name, ratios, methods, options, hparams, curve_fit")
    problems = Problems()
    check = problems.attempt
    check(reject_unknown_keys, raw, [f.name for f in dataclasses.fields(TaskSpec)], path)
    task = check(_task, raw.get("name"), join_path(path, "name"), task_registry)
    if "settings" in raw:
        settings = check(_choices, raw["settings"], join_path(path, "settings"), SETTINGS)
    if raw.get("precision", "auto") != "auto":
        precision = check(_precision, raw["precision"], join_path(path, "precision"), resources)
    curve_fit = check(build_dataclass, CurveFitSpec, raw.get("curve_fit"), join_path(path, "curve_fit"))
    if curve_fit is not FAILED:
        check(curve_fit.check, join_path(path, "curve_fit"))
    if task is FAILED:  # ratios, methods, options and hparams are checked against the task
        problems.raise_any()
    name = raw["name"]

    ratios = check(_ratios, raw.get("ratios", list(task.default_ratios)), join_path(path, "ratios"))
    known_methods = [m for m in method_registry.METHODS if task.family in method_registry.METHODS[m].families]
    if "methods" not in raw:
        methods = FAILED
        problems.errors.append(SpecError(join_path(path, "methods"), None,
                                         f"this field is required; methods for {name}: {', '.join(known_methods)}"))
    else:
        methods = check(_choices, raw["methods"], join_path(path, "methods"), known_methods)
    needs_two = [s for s in settings if s.startswith("Met")] if settings is not FAILED else []
    if needs_two and methods is not FAILED and len(methods) < 2:
        problems.errors.append(SpecError(join_path(path, "methods"), list(methods),
                                         f"settings {', '.join(needs_two)} pair two different methods: list at least "
                                         f"two, or drop those settings"))

    options = check(build_dataclass, task.Options, raw.get("options"), join_path(path, "options"))
    if options is not FAILED:
        options = check(task.normalize_options, options)
    if options is not FAILED and check(task.check_options, options, join_path(path, "options"), base_dir) is FAILED:
        options = FAILED
    if options is not FAILED and ratios is not FAILED:
        check(task.check_ratios, ratios, options, join_path(path, "ratios"))

    hparams = FAILED if methods is FAILED else check(_hparams, raw.get("hparams"), join_path(path, "hparams"), task,
                                                      methods, method_registry)
    problems.raise_any()
    hparams, from_search = hparams
    parsed = TaskSpec(name=name, ratios=tuple(float(r) for r in ratios), methods=methods,
                      options=options, hparams=hparams, curve_fit=curve_fit,
                      settings=() if settings is FAILED else tuple(settings), precision=precision,
                      from_search=from_search)
    if resources is not FAILED:
        _check_shards(parsed, resources, path)
    return parsed


def _task(name, path: str, task_registry):
    """The registered task called ``name``."""
    if name is None:
        raise SpecError(path, None, f"this field is required; known tasks: {', '.join(task_registry.TASKS)}")
    if not isinstance(name, str) or name not in task_registry.TASKS:
        raise SpecError(path, name, f"unknown task{did_you_mean(name, task_registry.TASKS)}; known tasks: "
                                    f"{', '.join(task_registry.TASKS)}")
    return task_registry.TASKS[name]


def _ratios(raw, path: str) -> list:
    ratios = _list(raw, path)
    for j, ratio in enumerate(ratios):
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 100:
            raise SpecError(join_path(path, j), ratio, "a forget ratio is a percentage strictly between 0 and 100")
    _unique(ratios, path)
    return ratios


def _hparams(raw, path: str, task, methods: tuple, method_registry) -> dict:
    """Method -> resolved knobs, for the task's methods and the methods their pathways start from;
    each method's block is checked on its own."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise SpecError(path, raw, "expected a mapping method -> {param: value}")
    # a pathway method trains from another method's endpoint: that method's knobs are needed too
    tuned = list(dict.fromkeys([*methods, *(method_registry.METHODS[m].source for m in methods
                                            if method_registry.METHODS[m].source)]))
    problems = Problems()
    hparams, searched = {}, []
    for method_name, values in raw.items():
        hp_path = join_path(path, method_name)
        if isinstance(values, dict) and "from_search" in values:
            values = dict(values)
            if problems.attempt(check_value, values.pop("from_search"), bool,
                                join_path(hp_path, "from_search")) is True:
                searched.append(method_name)
        if method_name not in tuned:
            problems.errors.append(SpecError(hp_path, values, f"hyper-parameters for a method not in this task's "
                                                              f"methods{did_you_mean(method_name, tuned)}; methods: "
                                                              f"{', '.join(tuned)}"))
            continue
        hparams[method_name] = problems.attempt(method_registry.resolve_hparams, method_name, task, values, hp_path)
    problems.raise_any()
    for method_name in tuned:
        hparams.setdefault(method_name, method_registry.resolve_hparams(method_name, task, {}, ""))
    return hparams, tuple(searched)


def _parse_resources(raw, path) -> ResourcesSpec:
    from mcu_ray.placement import STRATEGIES  # imported when parsing, as the registries are: placement needs torch

    raw = dict(raw or {}) if isinstance(raw, dict) or raw is None else raw
    if not isinstance(raw, dict):
        raise SpecError(path, raw, "expected a mapping")
    problems = Problems()
    train_path = join_path(path, "train")
    train = problems.attempt(build_dataclass, ScalingSpec, raw.pop("train", None), train_path)
    if train is not FAILED:
        if train.num_workers < 0:
            problems.errors.append(SpecError(
                join_path(train_path, "num_workers"), train.num_workers,
                "expected 0 (Train's local mode, in the trial's process), 1 (a worker of its own, e.g. on a GPU) "
                "or more (data parallel: each worker its shard of every batch)"))
        if train.grad_accum < 1:
            problems.errors.append(SpecError(join_path(train_path, "grad_accum"), train.grad_accum,
                                             "expected an integer >= 1"))
        if train.strategy not in STRATEGIES:
            problems.errors.append(SpecError(join_path(train_path, "strategy"), train.strategy,
                                             f"unknown strategy{did_you_mean(str(train.strategy), STRATEGIES)}; "
                                             f"allowed: ddp (each worker the whole model), fsdp (FSDP2: model, "
                                             f"gradients and optimiser state sharded over the workers)"))
        elif train.strategy == "fsdp" and train.num_workers < 2:
            problems.errors.append(SpecError(join_path(train_path, "num_workers"), train.num_workers,
                                             "strategy fsdp shards the model over the job's workers: expected 2 or "
                                             "more (or strategy: ddp)"))
        if not isinstance(train.resources_per_worker, dict) or not all(
                isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf
                for k, v in train.resources_per_worker.items()):
            problems.errors.append(SpecError(join_path(train_path, "resources_per_worker"), train.resources_per_worker,
                                             "expected a mapping resource name -> non-negative number, e.g. "
                                             "{CPU: 4, GPU: 1}"))
    resources = problems.attempt(build_dataclass, ResourcesSpec, raw, path, overrides={"train": train})
    if resources is not FAILED:
        for key, minimum in (("max_concurrent_trials", 1), ("eval_points_per_task", 1), ("max_failures", 0)):
            if getattr(resources, key) < minimum:
                problems.errors.append(SpecError(join_path(path, key), getattr(resources, key),
                                                 f"expected an integer >= {minimum}"))
        for key in ("trial_cpus", "eval_cpus", "eval_gpus"):
            if getattr(resources, key) < 0:
                problems.errors.append(SpecError(join_path(path, key), getattr(resources, key),
                                                 "expected a non-negative number"))
    problems.raise_any()
    return resources


# ----------------------------------------------------------------------------- files and overrides


MAX_FILE_BYTES = 10 * 2**20  # a sweep file is a few kB of YAML
MAX_YAML_DEPTH = 100  # nested lists and mappings (a sweep file needs 8; PyYAML's own recursion ends near 500)
MAX_YAML_NODES = 100_000  # values, lists and mappings with every alias expanded (a sweep file has hundreds)


def read_sweep_file(path: str | os.PathLike) -> Any:
    """The YAML document of a sweep file, not yet validated: a SpecError for anything but a file of
    UTF-8 YAML text of sane size."""
    path = Path(path)
    if path.is_dir():
        raise SpecError("<file>", str(path), "a directory: expected a sweep YAML file (see sweeps/)")
    if not path.is_file():
        raise SpecError("<file>", str(path), "no such sweep file")
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SpecError("<file>", str(path), f"{size:,} bytes: a sweep file is at most {MAX_FILE_BYTES:,} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise SpecError("<file>", str(path), f"cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError("<file>", str(path), f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
                                             f"expected a sweep file in YAML") from None
    return load_yaml(text, "<yaml>", str(path))


def load_yaml(text: str, path: str, value: Any, context: str = "") -> Any:
    """The YAML document ``text``; a SpecError (``path``, ``value``, ``context`` before the problem) when it
    is not valid YAML, nests deeper than MAX_YAML_DEPTH, or its aliases expand it beyond MAX_YAML_NODES
    (a "billion laughs": a few lines of anchors standing for 10**9 values)."""
    try:
        _check_yaml_size(text, path, value, context)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise SpecError(path, value, f"{context}not valid YAML at {where}: {getattr(exc, 'problem', exc)}") from None


def _check_yaml_size(text: str, path: str, value: Any, context: str) -> None:
    """Refuse a document's depth and alias-expanded size from its parse events, before PyYAML builds it
    (its recursive composer would fail on depth; the built objects share aliased parts, so their size
    shows only to whatever walks them later)."""
    expanded: dict = {}  # anchor -> nodes it stands for, its aliases expanded
    open_nodes: list = []  # [anchor, nodes so far] of each list or mapping being read, outermost first
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([event.anchor, 1])
            if len(open_nodes) > MAX_YAML_DEPTH:
                raise SpecError(path, value, f"{context}lists and mappings nested more than {MAX_YAML_DEPTH} deep")
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, nodes = open_nodes.pop()
        elif isinstance(event, yaml.AliasEvent):
            if any(event.anchor == open_anchor for open_anchor, _ in open_nodes):
                raise SpecError(path, value, f"{context}alias *{event.anchor} inside its own anchor: a document "
                                             f"that contains itself")
            anchor, nodes = None, expanded.get(event.anchor, 1)  # an undefined alias: PyYAML's error follows
        elif isinstance(event, yaml.ScalarEvent):
            anchor, nodes = event.anchor, 1
        else:
            continue
        if anchor is not None:
            expanded[anchor] = nodes
        if open_nodes:
            open_nodes[-1][1] += nodes
            nodes = open_nodes[-1][1]
        if nodes > MAX_YAML_NODES:
            raise SpecError(path, value, f"{context}more than {MAX_YAML_NODES:,} values, lists and mappings once "
                                         f"its aliases are expanded (a YAML bomb?)")


def load_spec(path: str | os.PathLike, overrides=()) -> SweepSpec:
    """Read and validate a sweep file, after ``overrides`` (``key=value`` strings, see apply_overrides).

    With overrides, their problems and the file's are reported together (SpecErrors), and
    a problem in a field an override set says which one.
    """
    raw = read_sweep_file(path)
    if not overrides:
        return parse_spec(raw, base_dir=Path(path).parent)
    problems = Problems()
    raw = apply_overrides(raw, overrides, keep_going=problems)
    spec = problems.attempt(parse_spec, raw, base_dir=Path(path).parent)
    set_paths = {}
    for text in overrides:
        with contextlib.suppress(SpecError):
            set_paths[_field_path(_override_keys(text.partition("=")[0].strip()))] = text
    problems.errors = [_blame(e, set_paths) for e in problems.errors]
    problems.raise_any()
    return spec


_YAML_11_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")  # 1e-4: text to YAML 1.1, a number here


def apply_overrides(raw: Any, overrides, keep_going: Problems | None = None) -> Any:
    """A copy of a sweep document with ``key=value`` assignments applied (the CLI's ``--set``).

    ``key`` is a dotted path into the document, list entries by index (``tasks.0.ratios``
    or ``tasks[0].ratios``); mappings missing on the way are created. ``value`` is read as
    YAML (``[2, 5]``, ``true``, ``{lr: 1.0e-4}``; ``1e-4`` is a number too). A bad
    assignment raises a SpecError naming the field; with ``keep_going`` the other
    assignments still apply and the errors are added to it instead.
    """
    raw = {} if raw is None else copy.deepcopy(raw)
    problems = keep_going if keep_going is not None else Problems()
    for text in overrides:
        key, eq, value_text = text.partition("=")
        keys = problems.attempt(_override_keys, key.strip()) if eq else FAILED
        if not eq:
            problems.errors.append(SpecError("--set", text, "expected key=value, e.g. tolerance=0.05 or "
                                                            "tasks.0.ratios=[2]"))
        if keys is FAILED:
            continue
        value = problems.attempt(load_yaml, value_text, _field_path(keys), value_text, f"--set {text}: ")
        if value is FAILED:
            continue
        if isinstance(value, str) and _YAML_11_FLOAT.fullmatch(value):
            value = float(value)
        problems.attempt(_assign, raw, keys, value, text)
    if keep_going is None:
        problems.raise_any()
    return raw


def _override_keys(key: str) -> list:
    """``tasks.0.ratios`` or ``tasks[0].ratios`` -> ["tasks", 0, "ratios"]."""
    parts = key.replace("[", ".").replace("]", "").split(".")
    if not all(parts):
        raise SpecError("--set", key, "expected a dotted path to a field, e.g. tolerance or tasks.0.ratios")
    return [int(part) if part.isdigit() else part for part in parts]


def _field_path(keys: list) -> str:
    """["tasks", 0, "ratios"] -> ``tasks[0].ratios``, as errors name fields."""
    path = ""
    for key in keys:
        path = join_path(path, key)
    return path


def _assign(raw: Any, keys: list, value: Any, text: str) -> None:
    """Put ``value`` at ``keys`` inside ``raw``; a SpecError naming the field when it cannot go there."""
    target, path = raw, ""
    for i, step in enumerate(keys):
        here = join_path(path, step)
        if isinstance(target, list):
            if not isinstance(step, int) or not 0 <= step < len(target):
                raise SpecError(here, None, f"--set {text}: {path} is a list of {len(target)}; index it with "
                                            f"0..{len(target) - 1}")
        elif isinstance(target, dict):
            if isinstance(step, int):
                raise SpecError(here, None, f"--set {text}: {path or 'the sweep file'} is a mapping, not a list; "
                                            f"name one of its keys")
        else:
            raise SpecError(path, target, f"--set {text}: a single value, not a mapping or list; set {path} itself")
        if i == len(keys) - 1:
            target[step] = value
            return
        inner = target[step] if isinstance(target, list) else target.get(step)
        if inner is None:  # a mapping missing on the way is created; a list is not guessed
            if isinstance(keys[i + 1], int):
                raise SpecError(here, None, f"--set {text}: no list here to index")
            inner = target[step] = {}
        target, path = inner, here


def _blame(error: SpecError, set_paths: dict) -> SpecError:
    """``error``, saying which ``--set`` put the value there when one did (the one nearest the field)."""
    for path, text in sorted(set_paths.items(), key=lambda item: -len(item[0])):
        if (error.path == path or error.path.startswith((path + ".", path + "["))) and "--set" not in error.allowed:
            return SpecError(error.path, error.value, f"{error.allowed} (set by --set {text})")
    return error


def spec_to_dict(spec: SweepSpec) -> dict:
    """The resolved spec as plain data (saved beside results; hashed into the spec id)."""
    return dataclasses.asdict(spec)


def resolved_sweep_file(spec: SweepSpec) -> dict:
    """The spec as a sweep file with every default written out (``--print-config``).

    Read back by ``parse_spec`` it gives the same spec: a method's knobs as the file
    writes them ({param: value, so: {...}, cl: {...}}), each task's settings and precision
    resolved.
    """
    def plain(value):  # tuples -> lists, for YAML
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    top = spec_to_dict(spec)
    tasks = []
    for task in spec.tasks:
        hparams = {m: {**dataclasses.asdict(h.params), "so": dataclasses.asdict(h.so), "cl": dataclasses.asdict(h.cl)}
                   for m, h in task.hparams.items()}
        tasks.append({"name": task.name, "ratios": task.ratios, "methods": task.methods, "settings": task.settings,
                      "precision": task.precision, "options": dataclasses.asdict(task.options), "hparams": hparams,
                      "curve_fit": dataclasses.asdict(task.curve_fit)})
        for method in task.from_search:
            hparams[method]["from_search"] = True
    order = ["name", "storage", "settings", "seeds", "curves", "bends", "points", "tolerance", "precision",
             "resources", "tracking"]
    search = {"search": spec.search.as_file()} if spec.search else {}
    return plain({**{k: top[k] for k in order}, "tasks": tasks, **search})
