"""The sweep file's ``search:`` section: what to tune, how many trials, towards what, stored where.

    search:
      trials: 12                    # per searched (task, method); the first is the method's defaults
      concurrency: 2                # trials in flight at once
      objective: gap_to_retrained   # or a registry metric, or [forget_quality: max, model_utility: max]
      asha: {grace_period: 1, reduction_factor: 2}   # optional early stopping, one rung per forget ratio
      db: postgresql://user@host/mcu                 # optional; default a SQLite file under the sweep's storage
      space:
        digits:                     # a task of this sweep
          ga:                       # one of its methods
            lr: {loguniform: [1.0e-5, 1.0e-2]}
            steps: {int: [10, 60]}
            so.rho: {uniform: [0.01, 0.1]}   # Sophia's knobs (the trial then trains with SO), cl.lam: SuperLoss's (CL)

Checked like every other block: each problem names its field, the value and what is
allowed. Nothing here is imported by the science; ``mcu_ray.search`` runs it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mcu_ray.errors import (FAILED, Problems, SpecError, build_dataclass, check_size, check_value, did_you_mean,
                            join_path, reject_unknown_keys)

GAP = "gap_to_retrained"  # mean |validation metric - the retrained model's| over the task's gap_metrics
DIRECTIONS = ("max", "min")
SAMPLERS = ("auto", "tpe", "nsga2")  # auto: TPE for one objective, NSGA-II for several
# kind -> (what its two bounds or its list are, the value type it draws)
DISTRIBUTIONS = {"loguniform": "float", "uniform": "float", "int": "int", "logint": "int", "choice": "any"}
BLOCKS = ("so", "cl")  # nested knob families: so.<Sophia knob>, cl.<curriculum knob>
MAX_TRIALS = 10_000
MAX_HEARTBEAT = 3600.0  # seconds: a trial silent for twice this long is taken for dead


@dataclass(frozen=True)
class Distribution:
    """One knob's range: ``{loguniform: [lo, hi]}``, ``{uniform: ...}``, ``{int: ...}``, ``{logint: ...}``
    or ``{choice: [a, b, ...]}``."""

    kind: str
    values: tuple

    def optuna(self):
        """The Optuna distribution it is."""
        import optuna.distributions as od

        if self.kind == "choice":
            return od.CategoricalDistribution(list(self.values))
        low, high = self.values
        if self.kind in ("int", "logint"):
            return od.IntDistribution(low, high, log=self.kind == "logint")
        return od.FloatDistribution(low, high, log=self.kind == "loguniform")

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        return self.values[0] <= value <= self.values[1]

    def as_file(self) -> dict:
        return {self.kind: list(self.values)}


@dataclass(frozen=True)
class AshaSpec:
    """Ray Tune's ASHA over the forget ratios: a trial reports its objective after each ratio (one
    rung), and the worse ones stop before training the rest."""

    grace_period: int = 1  # ratios every trial runs
    reduction_factor: int = 2

    def check(self, path: str) -> None:
        if self.grace_period < 1:
            raise SpecError(join_path(path, "grace_period"), self.grace_period,
                            "expected an integer >= 1 (forget ratios)")
        if self.reduction_factor < 2:
            raise SpecError(join_path(path, "reduction_factor"), self.reduction_factor, "expected an integer >= 2")


@dataclass(frozen=True)
class SearchSpec:
    space: dict  # task -> method -> {knob: Distribution}
    trials: int = 12  # finished trials per (task, method) study
    concurrency: int = 1  # trials of one study in flight at once
    objectives: tuple = ((GAP, "min"),)  # (name, max | min) pairs: one is TPE's, several a Pareto front
    sampler: str = "auto"
    asha: AshaSpec | None = None
    db: str = ""  # SQLAlchemy URL of the Optuna storage; "" = sqlite:///<storage>/<sweep>/search/studies.db
    seed: int = 0  # the sampler's
    heartbeat_seconds: float = 30.0  # a running trial's sign of life; one silent 2x this long was killed

    @property
    def sampler_kind(self) -> str:
        if self.sampler != "auto":
            return self.sampler
        return "tpe" if len(self.objectives) == 1 else "nsga2"

    def as_file(self) -> dict:
        """This section as a sweep file writes it (``--print-config``)."""
        return {"trials": self.trials, "concurrency": self.concurrency,
                "objective": [{name: direction} for name, direction in self.objectives], "sampler": self.sampler,
                "asha": dataclasses.asdict(self.asha) if self.asha else None, "db": self.db, "seed": self.seed,
                "heartbeat_seconds": self.heartbeat_seconds,
                "space": {task: {method: {knob: d.as_file() for knob, d in knobs.items()}
                                 for method, knobs in methods.items()} for task, methods in self.space.items()}}


_KEYS = ("space", "trials", "concurrency", "objective", "sampler", "asha", "db", "seed", "heartbeat_seconds")


def parse_search(raw: Any, tasks: list, path: str = "search") -> SearchSpec:
    """The ``search`` block, checked against the sweep's parsed ``tasks`` (FAILED entries skipped)."""
    if not isinstance(raw, dict):
        raise SpecError(path, raw, "expected a mapping with keys " + ", ".join(_KEYS))
    problems = Problems()
    check = problems.attempt
    check(reject_unknown_keys, raw, _KEYS, path)
    trials = check(_count, raw.get("trials", SearchSpec.trials), join_path(path, "trials"), MAX_TRIALS)
    concurrency = check(_count, raw.get("concurrency", 1), join_path(path, "concurrency"), 1024)
    seed = check(check_value, raw.get("seed", 0), int, join_path(path, "seed"))
    heartbeat = check(_positive, raw.get("heartbeat_seconds", SearchSpec.heartbeat_seconds),
                      join_path(path, "heartbeat_seconds"))
    sampler = raw.get("sampler", "auto")
    if sampler not in SAMPLERS:
        problems.errors.append(SpecError(join_path(path, "sampler"), sampler, f"unknown sampler{did_you_mean(sampler, SAMPLERS)}"
                                                                          f"; allowed: {', '.join(SAMPLERS)}"))
    db = check(_db_url, raw.get("db", ""), join_path(path, "db"))
    known = {t.name: (i, t) for i, t in enumerate(tasks) if t is not FAILED}
    objectives = check(_objectives, raw.get("objective", GAP), join_path(path, "objective"), known)
    asha = None
    if raw.get("asha") not in (None, False):
        asha = check(build_dataclass, AshaSpec, {} if raw["asha"] is True else raw["asha"], join_path(path, "asha"))
        if asha is not FAILED:
            check(asha.check, join_path(path, "asha"))
        if objectives is not FAILED and len(objectives) > 1:
            problems.errors.append(SpecError(join_path(path, "asha"), raw["asha"],
                                             "ASHA stops trials on one objective: drop asha or keep one objective"))
    space = check(_space, raw.get("space"), join_path(path, "space"), known)
    problems.raise_any()
    return SearchSpec(space=space, trials=trials, concurrency=concurrency, objectives=objectives, sampler=sampler,
                      asha=asha, db=db, seed=seed, heartbeat_seconds=heartbeat)


def _count(value, path: str, most: int) -> int:
    value = check_value(value, int, path)
    if not 1 <= value <= most:
        raise SpecError(path, value, f"expected an integer from 1 to {most}")
    return value


def _positive(value, path: str) -> float:
    value = check_value(value, float, path)
    if not 0 < value <= MAX_HEARTBEAT:
        raise SpecError(path, value, f"expected a positive number of seconds, at most {MAX_HEARTBEAT:g}")
    return value


def _db_url(value, path: str) -> str:
    """"" or a URL SQLAlchemy can parse (whether it opens is checked before any work, by the CLI)."""
    if value in ("", None):
        return ""
    value = check_value(value, str, path)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(value)
    except ArgumentError:
        raise SpecError(path, value, "expected a SQLAlchemy database URL, e.g. sqlite:////abs/path/studies.db or "
                                     "postgresql://user:password@host/dbname") from None
    return value


def _objectives(raw, path: str, tasks: dict) -> tuple:
    """``gap_to_retrained``, a registry metric (its registry direction), or [{metric: max|min}, ...]."""
    from mcu_ray.metrics import METRICS

    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, dict):
        raw = [{k: v} for k, v in raw.items()]
    if not isinstance(raw, list) or not raw:
        raise SpecError(path, raw, f"expected {GAP}, a metric name, or a list [metric: max|min, ...]")
    families = {t.family for t in (_task_of(name) for name in tasks)}
    objectives, problems = [], Problems()
    for i, item in enumerate(raw):
        here = join_path(path, i) if len(raw) > 1 else path
        if isinstance(item, str):
            name, direction = item, None
        elif isinstance(item, dict) and len(item) == 1:
            (name, direction), = item.items()
        else:
            problems.errors.append(SpecError(here, item, "expected a metric name or {metric: max|min}"))
            continue
        if name != GAP and name not in METRICS:
            problems.errors.append(SpecError(here, name, f"unknown metric{did_you_mean(name, [GAP, *METRICS])}; allowed: "
                                                         f"{GAP} or a registry metric ({', '.join(METRICS)})"))
            continue
        if name != GAP:
            wrong = sorted(f for f in families if METRICS[name].tasks not in (f, "both"))
            if wrong:
                problems.errors.append(SpecError(here, name, f"a {METRICS[name].tasks} metric; the searched tasks "
                                                             f"include the {', '.join(wrong)} family"))
                continue
        default = "min" if name == GAP else METRICS[name].direction
        direction = default if direction is None else direction
        if direction not in DIRECTIONS:
            problems.errors.append(SpecError(join_path(here, name), direction, "expected max or min"))
            continue
        objectives.append((name, direction))
    problems.raise_any()
    _unique_names([n for n, _ in objectives], path)
    return tuple(objectives)


def _unique_names(names: list, path: str) -> None:
    if len(set(names)) < len(names):
        raise SpecError(path, names, "each objective once")


def _task_of(name: str):
    from mcu_ray.tasks import TASKS

    return TASKS[name]


def _space(raw, path: str, tasks: dict) -> dict:  # tasks: name -> (index in the file, TaskSpec)
    """task -> method -> {knob: Distribution}, each knob one the method has, each range non-empty and
    holding the method's resolved value (the first trial is the defaults)."""
    if not isinstance(raw, dict) or not raw:
        raise SpecError(path, raw, "expected a mapping task -> method -> {knob: {distribution: [...]}}, e.g. "
                                   "{digits: {ga: {lr: {loguniform: [1.0e-5, 1.0e-2]}}}}")
    problems, space = Problems(), {}
    for task_name, methods in raw.items():
        task_path = join_path(path, task_name)
        if task_name not in tasks:
            problems.errors.append(SpecError(task_path, methods, f"not a task of this sweep"
                                                                 f"{did_you_mean(task_name, tasks)}; tasks: "
                                                                 f"{', '.join(tasks) or 'none parsed'}"))
            continue
        index, task = tasks[task_name]
        problems.attempt(_task_of(task_name).check_validation, task.options, f"tasks[{index}].options")
        if not isinstance(methods, dict) or not methods:
            problems.errors.append(SpecError(task_path, methods, f"expected a mapping method -> knobs; methods: "
                                                                 f"{', '.join(task.methods)}"))
            continue
        for method, knobs in methods.items():
            method_path = join_path(task_path, method)
            if method not in task.methods:
                problems.errors.append(SpecError(method_path, knobs, f"not a method of task {task_name}"
                                                                     f"{did_you_mean(method, task.methods)}; methods: "
                                                                     f"{', '.join(task.methods)}"))
                continue
            parsed = problems.attempt(_knobs, knobs, method_path, method, task.hparams[method])
            if parsed is not FAILED:
                space.setdefault(task_name, {})[method] = parsed
    problems.raise_any()
    return space


def knob_fields(method: str) -> dict:
    """knob name -> its resolved value's dataclass field, for every knob a search may draw: the method's
    Params, ``so.<Sophia knob>`` and ``cl.<curriculum knob>``."""
    from mcu_ray.methods import METHODS
    from mcu_ray.methods.curriculum import CurriculumParams
    from mcu_ray.methods.optimizers import SophiaParams

    fields = {f.name: f for f in dataclasses.fields(METHODS[method].Params)}
    for block, cls in zip(BLOCKS, (SophiaParams, CurriculumParams)):
        fields |= {f"{block}.{f.name}": f for f in dataclasses.fields(cls)}
    return fields


def resolved_value(knobs, knob: str):
    """The value ``knob`` (``lr``, ``so.rho``, ``cl.tau``) has in a method's resolved ``Knobs``."""
    block, _, name = knob.rpartition(".")
    return getattr(getattr(knobs, block or "params"), name)


def _knobs(raw, path: str, method: str, hparams) -> dict:
    if not isinstance(raw, dict) or not raw:
        raise SpecError(path, raw, "expected a mapping knob -> {loguniform|uniform|int|logint|choice: [...]}")
    fields, problems, knobs = knob_fields(method), Problems(), {}
    for knob, dist in raw.items():
        knob_path = join_path(path, knob)
        if knob not in fields:
            problems.errors.append(SpecError(knob_path, dist, f"{method} has no knob {knob!r}{did_you_mean(knob, fields)}"
                                                              f"; knobs: {', '.join(fields)}"))
            continue
        parsed = problems.attempt(_distribution, dist, knob_path, fields[knob].default)
        if parsed is FAILED:
            continue
        current = resolved_value(hparams, knob)
        if not parsed.contains(current):
            problems.errors.append(SpecError(knob_path, parsed.as_file(), f"the first trial is the defaults, and "
                                                                          f"{knob} is {current!r} there: a range that "
                                                                          f"holds it"))
            continue
        knobs[knob] = parsed
    problems.raise_any()
    return knobs


def _distribution(raw, path: str, default) -> Distribution:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise SpecError(path, raw, f"expected one of {{{', '.join(f'{k}: [...]' for k in DISTRIBUTIONS)}}}")
    (kind, values), = raw.items()
    if kind not in DISTRIBUTIONS:
        raise SpecError(join_path(path, kind), values,
                        f"unknown distribution{did_you_mean(kind, DISTRIBUTIONS)}; allowed: {', '.join(DISTRIBUTIONS)}")
    here = join_path(path, kind)
    if kind == "choice":
        if not isinstance(values, list) or not values or len(set(map(repr, values))) < len(values):
            raise SpecError(here, values, "expected a non-empty list of distinct values")
        for value in values:
            if default is not None and not isinstance(default, bool) and isinstance(value, bool) != isinstance(default, bool):
                raise SpecError(here, values, f"values of the knob's type ({type(default).__name__})")
        return Distribution(kind, tuple(values))
    wanted = DISTRIBUTIONS[kind]
    if isinstance(default, bool) or (isinstance(default, str)):
        raise SpecError(here, values, f"the knob takes {type(default).__name__} values: use choice: [...]")
    if isinstance(default, int) and wanted == "float":
        raise SpecError(here, values, "the knob is an integer: use int, logint or choice")
    if not isinstance(values, list) or len(values) != 2:
        raise SpecError(here, values, "expected [low, high]")
    tp = int if wanted == "int" else float
    low, high = (check_value(v, tp, join_path(here, i)) for i, v in enumerate(values))
    if low >= high:  # check_value refused non-finite bounds
        raise SpecError(here, values, "expected low < high")
    if kind in ("loguniform", "logint") and low <= 0:
        raise SpecError(here, values, "a log scale needs low > 0")
    check_size(high, path)  # a searched size (steps, epochs, batch_size...) has the bound of the knob itself
    return Distribution(kind, (low, high))


def searched_variant(knobs) -> tuple[str, str]:
    """(optimizer, curriculum) a trial trains with: SO when it draws Sophia's knobs, CL when it draws the
    curriculum's, else the plain first-order, no-curriculum endpoint."""
    return ("so" if any(k.startswith("so.") for k in knobs) else "fo",
            "cl" if any(k.startswith("cl.") for k in knobs) else "none")


def with_values(knobs, values: dict):
    """A method's resolved ``Knobs`` with ``values`` ({knob: value}) put in."""
    blocks = {}
    for knob, value in values.items():
        block, _, name = knob.rpartition(".")
        blocks.setdefault(block or "params", {})[name] = value
    return dataclasses.replace(knobs, **{block: dataclasses.replace(getattr(knobs, block), **changed)
                                          for block, changed in blocks.items()})
