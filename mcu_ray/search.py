"""Hyper-parameter search before the grid: one Optuna study per searched (task, method), its trials run by Ray Tune.

    python -m mcu_ray.search sweeps/search_digits.yaml            # the search alone
    python -m mcu_ray.sweep sweeps/search_digits.yaml             # the search, then the grid on the chosen values
    python -m mcu_ray.search SPEC --search-db postgresql://user@host/mcu   # a study shared by several drivers

A trial draws the knobs of ``search.space`` (TPE for one objective, NSGA-II for several; the
method's resolved values are the first trial), unlearns the original at every forget ratio of
the task with them (ordinary content-keyed endpoints: a configuration built before is reused,
and the grid reuses the winner), and scores each endpoint on the task's validation view
(``Task.validate``: data the report never scores) against the retrained model's. After each
ratio it reports the mean so far, so ASHA (``search.asha``) can stop it early.

The study is Optuna's RDB storage: a SQLite file under ``<storage>/<sweep>/search/`` or any
SQLAlchemy URL. Rerunning the command continues it until exactly ``search.trials`` trials
have finished (complete, or stopped early by ASHA): a running trial sends a heartbeat, one
silent for twice ``heartbeat_seconds`` belonged to a driver that died and is marked failed, so
it is neither counted nor waited for. Several drivers may share one study (PostgreSQL): each
asks for a trial only while finished + running < trials.

Results: ``<storage>/<sweep>/search/chosen.yaml`` (the chosen values, ready to paste into a sweep
file's task block) and ``summary.json`` (what the report draws: studies, objectives, the chosen
and the default trial). Nothing is pickled.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass

import ray
import yaml
from optuna.storages import fail_stale_trials
from optuna.trial import TrialState
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from mcu_ray.errors import SpecError
from mcu_ray.plan import FO, SCIENCE_VERSION, Variant, endpoint_of, original_of, retrained_of
from mcu_ray.search_spec import GAP, SearchSpec, resolved_value, searched_variant, with_values
from mcu_ray.spec import SweepSpec

SEARCH_DIR = "search"


class SearchFailed(RuntimeError):
    """A study ended without one trial that scored every forget ratio: the grid has nothing to use."""


def quiet_optuna() -> None:
    """Optuna's own chatter off (a line per study load, experimental-feature warnings for the
    heartbeats this module uses on purpose, with ask/tell rather than Study.optimize)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


# ----------------------------------------------------------------------------- studies


@dataclass(frozen=True)
class Study:
    """One searched (task, method): its Optuna study, what it draws and what it scores."""

    sweep: str
    task: object  # TaskSpec
    method: str
    knobs: dict  # knob -> Distribution
    search: SearchSpec
    seed: int  # the endpoints' seed (the sweep's first)

    @property
    def name(self) -> str:
        """``sweep.task.method.<hash>`` of everything that decides its trials' values: a changed space,
        objective, task or base hyper-parameter is a new study, never a silent change of an old one."""
        payload = {"v": SCIENCE_VERSION, "task": self.task.name, "options": dataclasses.asdict(self.task.options),
                   "precision": self.task.precision, "ratios": self.task.ratios, "method": self.method,
                   "hparams": dataclasses.asdict(self.task.hparams[self.method]),
                   "knobs": {k: d.as_file() for k, d in self.knobs.items()}, "objectives": self.search.objectives,
                   "sampler": self.search.sampler_kind, "seed": self.search.seed, "endpoint_seed": self.seed}
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.sweep}.{self.task.name}.{self.method}.{digest}"

    @property
    def default(self) -> dict:
        """The first trial: the method's resolved values of the searched knobs."""
        return {knob: resolved_value(self.task.hparams[self.method], knob) for knob in self.knobs}

    @property
    def variant(self) -> Variant:
        optimizer, curriculum = searched_variant(self.knobs)
        return dataclasses.replace(FO, optimizer=optimizer, curriculum=curriculum)

    def endpoint(self, values: dict, ratio: float):
        return endpoint_of(self.task, ratio, self.method, with_values(self.task.hparams[self.method], values),
                           self.variant, self.seed)


def studies(spec: SweepSpec) -> list[Study]:
    if not spec.search:
        return []
    tasks = {t.name: t for t in spec.tasks}
    return [Study(spec.name, tasks[task], method, knobs, spec.search, spec.seeds[0])
            for task, methods in spec.search.space.items() for method, knobs in methods.items()]


def default_db(storage: str, sweep: str) -> str:
    """sqlite:///<storage>/<sweep>/search/studies.db; a SpecError when the storage is not a local folder."""
    from mcu_ray.store import Store

    store = Store(storage)
    import pyarrow.fs as pafs

    if not isinstance(store.fs, pafs.LocalFileSystem):
        raise SpecError("search.db", "", f"the storage {storage} is not a local folder, so no SQLite file can live "
                                         f"there: give a database URL (search.db or --search-db), e.g. "
                                         f"postgresql://user@host/mcu")
    folder = os.path.join(store.root, sweep, SEARCH_DIR)
    os.makedirs(folder, exist_ok=True)
    return f"sqlite:///{folder}/studies.db"


def check_db(url: str, field: str) -> None:
    """Open the database once, before any work: a SpecError naming ``field`` when it cannot be."""
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(url).connect():
            pass
    except Exception as exc:  # any driver's error: the URL is refused before work starts
        reason = str(exc).splitlines()[0][:200]
        raise SpecError(field, url, f"cannot open this database ({type(exc).__name__}: {reason}); expected a "
                                    f"reachable SQLAlchemy URL with its driver installed") from None


def rdb(url: str, heartbeat: float):
    """Optuna's RDB storage with heartbeats: a trial silent for 2 x ``heartbeat`` s is stale."""
    import optuna

    interval = max(1, round(heartbeat))
    return optuna.storages.RDBStorage(url, heartbeat_interval=interval, grace_period=2 * interval)


def sampler(study: Study):
    """TPE for one objective, NSGA-II for several (or the sweep file's choice), seeded."""
    import optuna

    if study.search.sampler_kind == "tpe":
        return optuna.samplers.TPESampler(seed=study.search.seed)
    return optuna.samplers.NSGAIISampler(seed=study.search.seed)


def open_study(study: Study, storage):
    import optuna

    return optuna.create_study(storage=storage, study_name=study.name, sampler=sampler(study), load_if_exists=True,
                               directions=["maximize" if d == "max" else "minimize" for _, d in study.search.objectives])


def finished_states() -> tuple:
    return TrialState.COMPLETE, TrialState.PRUNED


# ----------------------------------------------------------------------------- objective


def objective_values(objectives, endpoint: dict, retrained: dict, gap_metrics) -> dict:
    """{objective name: value} of one endpoint's validation metrics (``gap_to_retrained``: the mean
    |endpoint - retrained| over the task's gap metrics, SalUn's 'Avg. Gap')."""
    out = {}
    for name, _ in objectives:
        if name == GAP:
            out[name] = float(sum(abs(endpoint[m] - retrained[m]) for m in gap_metrics) / len(gap_metrics))
        else:
            out[name] = float(endpoint[name])
    return out


def validation_metrics(store, task: str, options: dict, ratio: float, key: str, retrained: str, res) -> dict:
    """The validation view of artifact ``key`` (retrained model ``retrained``), computed once per store
    (``validation/<key>.json``) on an evaluation worker, outside the trial's placement group."""
    name = ("validation", f"{key}.json")
    if store.exists(*name):
        return json.loads(store.read_bytes(*name))
    task_ = validate_task.options(scheduling_strategy="DEFAULT", num_cpus=res.eval_cpus, num_gpus=res.eval_gpus)
    metrics = ray.get(task_.remote(store.uri, task, options, ratio, key, retrained, res.eval_cpus))
    store.write_bytes(json.dumps(metrics, sort_keys=True).encode(), *name)
    return metrics


def _validate(storage: str, task: str, options: dict, ratio: float, key: str, retrained: str, threads: float) -> dict:
    from mcu_ray import jobs
    from mcu_ray.evaluate import validate_state
    from mcu_ray.placement import ray_placement
    from mcu_ray.store import Store

    jobs.use_threads(threads)
    placement = ray_placement("task")
    return validate_state(task, options, ratio, Store(storage).load_weights(key), (storage, retrained), placement)


validate_task = ray.remote(_validate)


@dataclass
class TrialContext:
    """What every trial of one study needs; shipped once by Tune."""

    grid: object  # runner.Grid: the store, the build coordinator, the resources
    study: Study


def run_trial(config: dict, context: TrialContext) -> None:
    """Tune trainable: one configuration at every forget ratio; the objective reported after each."""
    from mcu_ray import jobs, runner
    from mcu_ray.tasks import TASKS

    study, grid = context.study, context.grid
    store, task, res = grid.store, study.task, grid.spec.resources
    jobs.use_threads(res.trial_cpus)
    values = {knob: config[knob] for knob in study.knobs}
    owner = f"search-{study.name}-{json.dumps(values, sort_keys=True)}"
    done, validation, endpoints = {}, {}, {}
    gap_metrics = TASKS[task.name].gap_metrics
    for i, ratio in enumerate(task.ratios):
        original, retrained, endpoint = original_of(task), retrained_of(task, ratio), study.endpoint(values, ratio)

        def train(kind, item):
            return lambda: runner.run_training_job(grid, kind, item, item.key)

        runner.ensure(grid, owner, {original.key: train("original", original),
                                    retrained.key: train("retrained", retrained)})
        runner.ensure(grid, owner, {endpoint.key: train("endpoint", endpoint)})
        problem = store.first_failed(original.key, retrained.key, endpoint.key)
        if problem:
            raise RuntimeError(f"{task.name}/{study.method} at {ratio:g} %: {problem}")
        scored = {key: validation_metrics(store, task.name, task.options, ratio, key, retrained.key, res)
                  for key in (endpoint.key, retrained.key)}
        objectives = objective_values(study.search.objectives, scored[endpoint.key], scored[retrained.key], gap_metrics)
        for name, value in objectives.items():
            done.setdefault(name, []).append(value)
        validation[str(ratio)], endpoints[str(ratio)] = scored[endpoint.key], endpoint.key
        tune.report({**{name: sum(v) / len(v) for name, v in done.items()}, "ratios_done": i + 1,
                     "validation_json": json.dumps(validation), "endpoints_json": json.dumps(endpoints)})


# ----------------------------------------------------------------------------- the searcher


class StudySearch(OptunaSearch):
    """Ray Tune's OptunaSearch on ``study``'s stored Optuna study, made to stop at exactly
    ``trials`` finished trials whatever happened before (a killed driver, other drivers): it asks
    for a trial only while finished + running < trials, after failing the stale ones (no heartbeat
    for 2 x heartbeat_seconds), and keeps its own running trials' heartbeats fresh."""

    def __init__(self, study: Study, storage, points: list):
        names = [name for name, _ in study.search.objectives]
        modes = [direction for _, direction in study.search.objectives]
        super().__init__(space={k: d.optuna() for k, d in study.knobs.items()},
                         metric=names if len(names) > 1 else names[0], mode=modes if len(modes) > 1 else modes[0],
                         points_to_evaluate=points or None, sampler=sampler(study),
                         study_name=study.name, storage=storage)  # the sampler holds the seed
        self.study, self.storage, self._checked = study, storage, 0.0
        threading.Thread(target=self._beat, daemon=True).start()

    def suggest(self, trial_id: str):
        if time.monotonic() - self._checked < 1.0:  # Tune asks often; the database is asked once a second
            return None
        self._checked = time.monotonic()
        fail_stale_trials(self._ot_study)
        trials = self._ot_study.get_trials(deepcopy=False)
        finished = sum(t.state in finished_states() for t in trials)
        running = sum(t.state == TrialState.RUNNING for t in trials)
        failed = sum(t.state == TrialState.FAIL for t in trials)
        target = self.study.search.trials
        if finished >= target or failed >= 2 * target:
            return Searcher.FINISHED
        if finished + running >= target:
            return None  # the last ones are running (here or elsewhere): wait for them
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            self.storage.record_heartbeat(self._ot_trials[trial_id]._trial_id)
        return config

    def _beat(self) -> None:
        while True:
            time.sleep(self.storage.heartbeat_interval / 2)
            for trial_id, ot_trial in list(self._ot_trials.items()):
                if trial_id not in self._completed_trials:
                    self.storage.record_heartbeat(ot_trial._trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and result and "ratios_done" in result:
            ot_trial.set_user_attr("ratios_done", int(result["ratios_done"]))
            ot_trial.set_user_attr("validation", json.loads(result["validation_json"]))
            ot_trial.set_user_attr("endpoints", json.loads(result["endpoints_json"]))
            if not error and result["ratios_done"] < len(self.study.task.ratios):  # stopped early by ASHA
                self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
                self._completed_trials.add(trial_id)
                return
        super().on_trial_complete(trial_id, result=result, error=error)


def default_points(study: Study, optuna_study) -> list[dict]:
    """[the defaults] unless a trial of them is finished, running or queued already (a rerun)."""
    live = (*finished_states(), TrialState.RUNNING, TrialState.WAITING)
    default = study.default
    for trial in optuna_study.get_trials(deepcopy=False, states=live):
        params = trial.params if trial.state != TrialState.WAITING else trial.system_attrs.get("fixed_params", {})
        if all(params.get(k) == v for k, v in default.items()):
            return []
    return [default]


# ----------------------------------------------------------------------------- choosing


def complete_trials(optuna_study, ratios: int) -> list:
    """Trials that scored every forget ratio (ASHA-stopped ones scored fewer: not comparable)."""
    return [t for t in optuna_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("ratios_done") == ratios and t.values is not None]


def dominates(a: list, b: list, signs: list) -> bool:
    """Whether objective vector ``a`` Pareto-dominates ``b`` (sign +1: higher is better)."""
    return all(s * x >= s * y for x, y, s in zip(a, b, signs)) and any(s * x > s * y for x, y, s in zip(a, b, signs))


def pareto_front(trials: list, signs: list) -> list:
    return [t for t in trials if not any(dominates(o.values, t.values, signs) for o in trials if o is not t)]


def choose(trials: list, objectives) -> tuple[object, str]:
    """The chosen trial and the rule: the best value for one objective; for several, the point of the
    Pareto front closest to its ideal point after each objective is scaled to [0, 1] over the front
    (1 = the front's best), ties to the earlier trial."""
    signs = [1 if d == "max" else -1 for _, d in objectives]
    if len(objectives) == 1:
        return max(trials, key=lambda t: (signs[0] * t.values[0], -t.number)), "best objective"
    front = pareto_front(trials, signs)
    spans = [(min(t.values[i] for t in front), max(t.values[i] for t in front)) for i in range(len(signs))]

    def distance(t) -> float:
        scaled = [((t.values[i] - lo) / (hi - lo) if hi > lo else 1.0) for i, (lo, hi) in enumerate(spans)]
        scaled = [v if s > 0 else 1 - v for v, s in zip(scaled, signs)]
        return math.dist(scaled, [1.0] * len(scaled))

    return min(front, key=lambda t: (distance(t), t.number)), "closest to the ideal point of the normalised Pareto front"


def study_summary(study: Study, optuna_study) -> dict:
    """The study as the report reads it (``summary.json``)."""
    trials = complete_trials(optuna_study, len(study.task.ratios))
    default = study.default
    default_trial = next((t for t in trials if all(t.params.get(k) == v for k, v in default.items())), None)
    entry = {"task": study.task.name, "method": study.method, "study": study.name,
             "space": {k: d.as_file() for k, d in study.knobs.items()},
             "objectives": [list(o) for o in study.search.objectives], "trials": study.search.trials,
             "ratios": list(study.task.ratios), "default": default,
             "default_trial": default_trial.number if default_trial else None,
             "default_values": list(default_trial.values) if default_trial else None,
             "chosen": None, "chosen_trial": None, "chosen_values": None, "chosen_endpoints": None, "rule": None}
    if trials:
        chosen, rule = choose(trials, study.search.objectives)
        entry |= {"chosen": {k: chosen.params[k] for k in study.knobs}, "chosen_trial": chosen.number,
                  "chosen_values": list(chosen.values), "chosen_endpoints": chosen.user_attrs.get("endpoints"),
                  "rule": rule}
    return entry


def chosen_yaml(spec: SweepSpec, entries: list[dict]) -> str:
    """chosen.yaml: per task, an ``hparams`` block to paste into a sweep file's task."""
    lines = [f"# Chosen by mcu_ray.search for sweep {spec.name}; paste a task's hparams into its block of any "
             f"sweep file.", "# Per study: the trial, the rule and the objective (the defaults' in brackets)."]
    tasks: dict = {}
    for e in entries:
        if not e["chosen"]:
            continue
        lines.append(f"#   {e['task']}/{e['method']}: study {e['study']}, trial {e['chosen_trial']} ({e['rule']}): "
                     + ", ".join(f"{name} {v:.4g} ({'n/a' if e['default_values'] is None else format(d, '.4g')})"
                                 for (name, _), v, d in zip(e["objectives"], e["chosen_values"],
                                                            e["default_values"] or e["chosen_values"])))
        knobs = tasks.setdefault(e["task"], {"hparams": {}})["hparams"].setdefault(e["method"], {})
        for knob, value in e["chosen"].items():
            block, _, name = knob.rpartition(".")
            (knobs.setdefault(block, {}) if block else knobs)[name] = value
    return "\n".join(lines) + "\n" + yaml.safe_dump(tasks, sort_keys=False)


def read_summary(store, sweep: str) -> dict | None:
    if not store.exists(sweep, SEARCH_DIR, "summary.json"):
        return None
    return json.loads(store.read_bytes(sweep, SEARCH_DIR, "summary.json"))


def apply_chosen(spec: SweepSpec, summary: dict | None) -> tuple[SweepSpec, list[str]]:
    """The spec with every searched method's chosen values (of this spec's studies only: a summary of
    another space or objective is not used); and one line per searched method saying what it trains with."""
    entries = {(e["task"], e["method"]): e for e in (summary or {}).get("studies", [])}
    notes, tasks = [], []
    by_task = {}
    for study in studies(spec):
        entry = entries.get((study.task.name, study.method))
        if entry and entry["study"] == study.name and entry["chosen"]:
            by_task.setdefault(study.task.name, {})[study.method] = entry["chosen"]
            notes.append(f"{study.task.name}/{study.method}: the grid trains with the values chosen by study "
                         f"{study.name}: {entry['chosen']}")
        else:
            notes.append(f"{study.task.name}/{study.method}: study {study.name} has no chosen values yet; "
                         f"the search runs first")
    for task in spec.tasks:
        chosen = by_task.get(task.name, {})
        hparams = {m: (with_values(h, chosen[m]) if m in chosen else h) for m, h in task.hparams.items()}
        tasks.append(dataclasses.replace(task, hparams=hparams))
    return dataclasses.replace(spec, tasks=tuple(tasks)), notes


# ----------------------------------------------------------------------------- running


class TrialProgress(tune.Callback):
    """One line per finished trial: the study, the objective, the knobs drawn."""

    def __init__(self, study: Study):
        self.study, self.started = study, time.time()

    def on_trial_complete(self, iteration, trials, trial, **info):
        study, res = self.study, trial.last_result or {}
        text = ", ".join(f"{name} {res[name]:.4g}" for name, _ in study.search.objectives if name in res)
        knobs = ", ".join(f"{k}={trial.config[k]:.4g}" if isinstance(trial.config[k], float) else
                          f"{k}={trial.config[k]}" for k in study.knobs)
        stopped = "" if res.get("ratios_done") == len(study.task.ratios) else " (stopped early)"
        print(f"[search {study.task.name}/{study.method}] trial done{stopped}: {text}  {knobs}  "
              f"(elapsed {time.time() - self.started:.0f}s)", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        print(f"[search {self.study.task.name}/{self.study.method}] trial failed; see {trial.local_path}", flush=True)


def run_study(grid, study: Study, db: str) -> dict:
    """Run ``study`` until it has its finished trials; its summary entry."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import ConcurrencyLimiter

    storage = rdb(db, study.search.heartbeat_seconds)
    optuna_study = open_study(study, storage)
    fail_stale_trials(optuna_study)
    finished = sum(t.state in finished_states() for t in optuna_study.get_trials(deepcopy=False))
    target = study.search.trials
    print(f"search {study.task.name}/{study.method}: study {study.name}, {finished} of {target} trials finished",
          flush=True)
    if finished < target:
        searcher = ConcurrencyLimiter(StudySearch(study, storage, default_points(study, optuna_study)),
                                      max_concurrent=study.search.concurrency)
        first, direction = study.search.objectives[0]
        scheduler = (ASHAScheduler(time_attr="ratios_done", metric=first, mode=direction,
                                   max_t=len(study.task.ratios), grace_period=study.search.asha.grace_period,
                                   reduction_factor=study.search.asha.reduction_factor)
                     if study.search.asha else FIFOScheduler())
        res = grid.spec.resources
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(run_trial, context=TrialContext(grid, study)),
                                {"cpu": res.trial_cpus}),
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                        reuse_actors=True),
            run_config=tune.RunConfig(name=study.name, storage_path=f"{grid.storage.rstrip('/')}/{grid.spec.name}/"
                                                                    f"{SEARCH_DIR}/tune",
                                      callbacks=[TrialProgress(study)], verbose=0),
        )
        tuner.fit()
    optuna_study = open_study(study, storage)
    return study_summary(study, optuna_study)


def run_search(spec: SweepSpec, storage: str, db: str | None = None) -> tuple[SweepSpec, dict]:
    """Every study of ``spec.search`` to its trials (Ray must be running); chosen.yaml and summary.json
    written; the spec with the chosen values, and the summary."""
    from mcu_ray import runner
    from mcu_ray.plan import make_plan
    from mcu_ray.store import Store

    quiet_optuna()
    store = Store(storage)
    url = db or spec.search.db or default_db(store.uri, spec.name)
    grid = runner.Grid(spec, make_plan(spec), store.uri, runner.spec_hash(spec))
    coordinator = runner.start_coordinator(grid.storage)
    entries = [run_study(grid, study, url) for study in studies(spec)]
    del coordinator  # every trial is done
    summary = {"sweep": spec.name, "db": url, "studies": entries}
    store.write_bytes(json.dumps(summary, indent=1).encode(), spec.name, SEARCH_DIR, "summary.json")
    store.write_bytes(chosen_yaml(spec, entries).encode(), spec.name, SEARCH_DIR, "chosen.yaml")
    for e in entries:
        if e["chosen"]:
            print(f"search {e['task']}/{e['method']}: chose trial {e['chosen_trial']} {e['chosen']} "
                  f"({e['rule']}): {e['chosen_values']}; defaults {e['default']}: {e['default_values']}", flush=True)
    print(f"search: {store.uri}/{spec.name}/{SEARCH_DIR}/chosen.yaml", flush=True)
    empty = [f"{e['task']}/{e['method']}" for e in entries if not e["chosen"]]
    if empty:
        raise SearchFailed(f"search: no trial of {', '.join(empty)} scored every forget ratio (each failed, see the "
                           f"trial logs above); the grid is not run. Rerun to continue the studies.")
    chosen, _ = apply_chosen(spec, summary)
    return chosen, summary


def database(spec: SweepSpec, storage: str, flag: str | None) -> str:
    """The study database's URL (flag, sweep file, or the default SQLite file), opened once: SpecError if not."""
    url = flag or spec.search.db
    field = "--search-db" if flag else "search.db"
    if not url:
        from mcu_ray.store import Store

        url, field = default_db(Store(storage).uri, spec.name), "search.db"
    check_db(url, field)
    return url


# ----------------------------------------------------------------------------- command line


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m mcu_ray.search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", help="sweep YAML file with a search: section")
    parser.add_argument("--storage", help="storage root (default: the spec's)")
    parser.add_argument("--search-db", help="SQLAlchemy URL of the Optuna study database (default: search.db, else "
                                            "sqlite:///<storage>/<sweep>/search/studies.db)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="override a field of the sweep file (as python -m mcu_ray.sweep --set)")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a new local instance)")
    parser.add_argument("--num-cpus", type=int, help="CPUs of a new local Ray instance")
    parser.add_argument("--verbose", action="store_true", help="Ray's and Tune's own messages")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    from mcu_ray.driver import check_storage, fail, fail_all, quiet_ray, start_ray
    from mcu_ray.errors import spec_errors
    from mcu_ray.spec import load_spec

    args = parse_args(argv)
    try:
        spec = load_spec(args.spec, args.overrides)
    except SpecError as exc:
        fail_all([f"{args.spec}: {e}" for e in spec_errors(exc)])
    if not spec.search:
        fail(f"{args.spec}: search: no search section; add one (see python -m mcu_ray.search --help)")
    storage = args.storage or spec.storage
    try:
        check_storage(storage)
        url = database(spec, storage, args.search_db)
    except SpecError as exc:
        fail(f"{args.spec}: {exc}")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet_ray(args.verbose)
    start_ray(args.address, args.num_cpus, spec.resources, args.verbose)
    try:
        run_search(spec, storage, url)
    except SearchFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
