"""The Ray edge: a Tune trial per cell, a Train job per artifact, a task per t-point.

Inside a trial: make sure the original, the two endpoints and the retrained
reference exist (each a ``TorchTrainer`` job, run at most once per key across all
concurrent trials thanks to a small coordinator actor), fit the Bezier bends, fan
the interior t-points out as Ray tasks, then write the cell's rows and barriers, and the
per-example values of its models (and, with ``--per-example``, of its curves' points).
Everything below ``jobs`` is plain PyTorch; this module only schedules it.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from mcu_ray import jobs, provenance
from mcu_ray import rows as table_rows
from mcu_ray.curves import curve_length
from mcu_ray.placement import ray_placement
from mcu_ray.plan import Cell, Plan, item_as_dict, item_from_dict
from mcu_ray.spec import SweepSpec, spec_to_dict
from mcu_ray.store import LEASE_SECONDS, State, Store
from mcu_ray.tables import example_table, write_examples, write_table
from mcu_ray.tracking import cell_metrics, tracking_callbacks, trial_name

log = logging.getLogger(__name__)
NAMESPACE = "mcu_ray"


# ----------------------------------------------------------------------------- coordination


@ray.remote(num_cpus=0)
class BuildCoordinator:
    """Grants one builder per artifact key; the others wait for it to finish.

    Claims are held by an owner (the cell key), so a retried trial may take back its
    own claim, and a failed trial's claims are dropped by the driver's callback.
    """

    def __init__(self):
        self.holders: dict[str, str] = {}
        self.done: dict[str, asyncio.Event] = {}

    async def ready(self) -> bool:
        return True

    async def claim(self, key: str, owner: str) -> bool:
        if self.holders.get(key, owner) != owner:
            return False
        self.holders[key] = owner
        self.done.setdefault(key, asyncio.Event())
        return True

    async def release(self, key: str, owner: str) -> None:
        if self.holders.get(key) == owner:
            del self.holders[key]
            self.done.pop(key).set()

    async def release_owner(self, owner: str) -> int:
        keys = [k for k, o in self.holders.items() if o == owner]
        for key in keys:
            await self.release(key, owner)
        return len(keys)

    async def wait_any(self, keys: list[str], timeout: float) -> None:
        events = [self.done[k].wait() for k in keys if k in self.done]
        if len(events) < len(keys):
            return  # some key is unclaimed: the caller may claim it now
        waiters = [asyncio.ensure_future(e) for e in events]
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()


def coordinator_name(storage: str) -> str:
    return "builds-" + hashlib.sha256(storage.encode()).hexdigest()[:12]


def start_coordinator(storage: str):
    """This store's BuildCoordinator, on the driver's node: a lost worker node must not take the claims with it.
    The caller holds the handle while trials run: an actor dies with its creator's last handle."""
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    coordinator = BuildCoordinator.options(name=coordinator_name(storage), namespace=NAMESPACE, get_if_exists=True,
                                           scheduling_strategy=here, max_restarts=-1).remote()
    ray.get(coordinator.ready.remote())
    return coordinator


# ----------------------------------------------------------------------------- grid context


@dataclass
class Grid:
    """What every trial needs; shipped once through the object store by Tune."""

    spec: SweepSpec
    plan: Plan
    storage: str
    spec_hash: str
    per_example: bool = False  # also store the per-example values of every evaluated curve point
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:12])  # this driver's run

    @property
    def store(self) -> Store:
        return Store(self.storage)

    def coordinator(self):
        return ray.get_actor(coordinator_name(self.storage), namespace=NAMESPACE)


def spec_hash(spec: SweepSpec) -> str:
    """A hash of the resolved sweep file, without its tolerances (they decide verdicts when the
    report is drawn, not what a row holds, so changing them leaves stored rows current) and its
    tracking (where cells are logged besides the store)."""
    resolved = {k: v for k, v in spec_to_dict(spec).items() if k not in ("tolerance", "tracking")}
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- training jobs


def _train_loop(config: dict):
    """Per-worker loop of every training job: build one artifact, return its metadata.

    The worker's device comes from Ray Train (its GPU, or the CPU); with several workers
    each takes its shard of every batch, gradients are summed over them (gloo on CPUs,
    NCCL on GPUs), and rank 0 alone evaluates and writes (its return value is the job's).
    """
    jobs.use_threads(config["threads"])
    placement = ray_placement("local" if config["local"] else "train", config["grad_accum"], config["strategy"])
    store = Store(config["storage"])
    kind, item = config["kind"], config["item"]
    build = {"original": jobs.build_original, "retrained": jobs.build_retrained, "endpoint": jobs.build_endpoint,
             "bend": jobs.build_bend}[kind]
    return build(store, item_from_dict(kind, item), placement)


def run_training_job(grid: Grid, kind: str, item, key: str) -> dict:
    """One artifact as a Ray Train job named after its key (so a restarted driver finds it)."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    scaling = grid.spec.resources.train
    trainer = TorchTrainer(
        _train_loop,
        train_loop_config={"kind": kind, "item": item_as_dict(item), "storage": grid.storage,
                           "grad_accum": scaling.grad_accum, "strategy": scaling.strategy,
                           "local": scaling.num_workers == 0,
                           "threads": max(1.0, grid.spec.resources.trial_cpus if scaling.num_workers == 0
                                          else scaling.resources_per_worker.get("CPU", 1))},
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker=scaling.resources_per_worker or None),
        run_config=RunConfig(name=key, storage_path=f"{grid.storage.rstrip('/')}/train_runs"),
    )
    return trainer.fit().return_value


_WHOLE: set[tuple[str, str]] = set()  # (store, key) this process found whole: an artifact never changes under its key


def stored_whole(store: Store, key: str) -> bool:
    """Whether ``key`` is stored whole (``ArtifactStatus.whole``), its checksums read once per process."""
    if (store.uri, key) not in _WHOLE and store.status(key).whole:
        _WHOLE.add((store.uri, key))
    return (store.uri, key) in _WHOLE


def whole_or_discarded(store: Store, key: str) -> bool:
    """Whether ``key`` is stored whole; a corrupt or truncated artifact is reported and discarded
    (False: it is to be built again).

    Called by the holder of the key's claim, so no other trial is building it meanwhile.
    """
    if stored_whole(store, key):
        return True
    status = store.status(key)
    if status.state is State.CORRUPT:
        log.warning("artifact %s is corrupt (%s); rebuilding it", key, status.reason)
        print(f"[corrupt] artifact {key} failed its checksum; recomputing it", flush=True)
        store.discard(key)
    return False


def ensure(grid: Grid, owner: str, builders: dict) -> None:
    """Make every key in ``builders`` exist in the store, building each at most once.

    A key already being built by another trial is waited for; meanwhile this trial
    builds whatever else it can claim.
    """
    store, coordinator = grid.store, grid.coordinator()
    lease_owner = f"{grid.run_id}:{owner}"  # unique to this driver's run, stable across trial retries
    pending = dict(builders)
    while pending:
        progressed = elsewhere = False
        for key in list(pending):
            if stored_whole(store, key):
                pending.pop(key)
                continue
            if not ray.get(coordinator.claim.remote(key, owner)):
                continue
            try:
                if not store.acquire_lease(key, lease_owner):  # another driver on this store builds it
                    elsewhere = True
                    continue
                try:
                    with renewing_lease(store, key):
                        if not whole_or_discarded(store, key):
                            pending[key]()
                finally:
                    store.release_lease(key, lease_owner)
            finally:
                ray.get(coordinator.release.remote(key, owner))
            pending.pop(key)
            progressed = True
        if pending and not progressed:
            if elsewhere:
                time.sleep(2.0)
            else:
                ray.get(coordinator.wait_any.remote(list(pending), 10.0))


@contextlib.contextmanager
def renewing_lease(store: Store, key: str):
    """Keep a build lease fresh while a long job runs, from a background thread."""
    stop = threading.Event()

    def renew():
        while not stop.wait(LEASE_SECONDS / 4):
            store.renew_lease(key)

    thread = threading.Thread(target=renew, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


# ----------------------------------------------------------------------------- evaluation tasks


@ray.remote
def evaluate_points_task(curve: dict, control_points: list, ts: list, storage: str, threads: float,
                         per_example: bool = False) -> tuple[dict, list[dict], object]:
    """Evaluate phi(t) for each t in ``ts`` (one or a few points per task), on the GPU Ray gave this
    task if it asked for one (``eval_gpus``), else on the CPU: this process's provenance, the rows, and
    with ``per_example`` their per-example values (``jobs.point_examples``; else None)."""
    jobs.use_threads(threads)
    placement = ray_placement("task")
    rows = jobs.evaluate_curve_serially(Store(storage), item_from_dict("curve", curve), ts, placement, control_points)
    examples = jobs.point_examples(rows) if per_example else None
    return provenance.describe(placement.device), [dict(row) for row in rows], examples


@ray.remote
def evaluate_original_task(storage: str, original, retrained, threads: float) -> tuple[dict, object]:
    """The original model on one ratio's splits (the figures' reference line), on this task's device;
    with this process's provenance columns, and its per-example values (``tables.EXAMPLE_SCHEMA``)."""
    jobs.use_threads(threads)
    placement = ray_placement("task")
    evaluation = jobs.original_metrics(Store(storage), original, retrained, placement)
    return ({**evaluation, **provenance.columns(provenance.describe(placement.device))},
            example_table(evaluation.examples))


def evaluate_curve(grid: Grid, curve, points: bool = True, examples: bool = False) -> None:
    """The interior t-points of one curve as parallel Ray tasks; weights shipped once. Stores their
    metrics (``points``: the curve's artifact) and, from the same passes, their per-example values
    (``examples``: ``jobs.examples_key``'s artifact); either alone when only it is missing.

    ``eval_points_per_task`` > 1 groups points so that small models do not pay a task's
    overhead per point; 1 spreads a curve over as many workers (GPUs) as are free.
    """
    store = grid.store
    store.record_job(curve.key if points else jobs.examples_key(curve), "evaluation")
    started = time.time()
    res = grid.spec.resources
    cps = jobs.control_points(store, curve)
    cps_ref = ray.put(cps)
    # Outside the trial's placement group: the trial holds only what it runs itself.
    task = evaluate_points_task.options(scheduling_strategy="DEFAULT", num_cpus=res.eval_cpus, num_gpus=res.eval_gpus)
    ts, size = jobs.interior_ts(curve), res.eval_points_per_task
    refs = [task.remote(item_as_dict(curve), cps_ref, ts[i:i + size], store.uri, res.eval_cpus, examples)
            for i in range(0, len(ts), size)]
    done = ray.get(refs)
    computed_by, seconds = provenance.combine([described for described, _, _ in done]), time.time() - started
    if points:
        jobs.save_points(store, curve, [row for _, rows, _ in done for row in rows],
                         curve_length(cps, jobs.blend(curve)), computed_by, seconds)
    if examples:
        jobs.save_point_examples(store, curve, [table for _, _, table in done], computed_by, seconds)


# ----------------------------------------------------------------------------- the trial


def run_cell(config: dict, grid: Grid) -> dict:
    """Tune trainable: everything one cell needs, then its rows and barriers."""
    started = time.time()
    plan, store = grid.plan, grid.store
    cell = next(c for c in plan.cells if c.key == config["cell"]["key"])
    jobs.use_threads(grid.spec.resources.trial_cpus)
    e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
    original = plan.originals[e1.original]

    def train(kind, item, key=None):
        return lambda: run_training_job(grid, kind, item, key or item.key)

    ensure(grid, cell.key, {original.key: train("original", original),
                            cell.retrained: train("retrained", plan.retrained[cell.retrained])})
    inputs_ok = not store.first_failed(original.key, cell.retrained)  # stored before anything below runs
    if inputs_ok:
        sources = [plan.endpoints[e.source] for e in (e1, e2) if e.source]  # pathway endpoints start from these
        ensure(grid, cell.key, {e.key: train("endpoint", e) for e in sources})
        ensure(grid, cell.key, {e.key: train("endpoint", e) for e in (e1, e2)})
    curves = [plan.curves[key] for _, key in cell.curves]
    # endpoints exist only when the original and the retrained model do (a failed retrained model
    # used to send its cells' bends to train from endpoints that were never built)
    healthy = [c for c in curves if inputs_ok and not store.first_failed(c.endpoint_1, c.endpoint_2)]
    ensure(grid, cell.key, {jobs.bend_key(c): train("bend", c, jobs.bend_key(c)) for c in healthy if c.trained})
    evaluated = [c for c in healthy if not (c.trained and store.first_failed(jobs.bend_key(c)))]
    ensure(grid, cell.key, {c.key: (lambda c=c: evaluate_curve(grid, c, examples=grid.per_example))
                            for c in evaluated})
    if grid.per_example:  # curves evaluated without the switch before: their points again, for these alone
        ensure(grid, cell.key, {jobs.examples_key(c): (lambda c=c: evaluate_curve(grid, c, points=False, examples=True))
                                for c in evaluated})

    rows, barrier_rows, summary = table_rows.cell_rows(grid.plan, grid.spec, grid.spec_hash, grid.store, cell)
    sweep, retrained = grid.spec.name, plan.retrained[cell.retrained]
    if inputs_ok:
        write_reference_tables(grid, original, retrained)
    for endpoint in (e1, e2):  # pathway endpoints are built only on healthy inputs
        if endpoint.source and inputs_ok and not store.first_failed(endpoint.key):
            write_pathway_table(grid, endpoint)
    write_example_tables(grid, (e1, e2), curves, evaluated)
    seconds = {"cell_seconds": time.time() - started}
    if not store.cell_done(sweep, cell.key):  # a done cell runs again only for per-example values: left as it was
        write_table(store, sweep, "barriers", [{**row, **seconds} for row in barrier_rows], cell.key)
        write_table(store, sweep, "results", [{**row, **seconds} for row in rows], cell.key)  # last: marks it done
    return {**summary, **cell_metrics(rows, barrier_rows), **seconds}  # the trial's result: what tracking logs


def write_example_tables(grid: Grid, endpoints, curves: list, evaluated: list) -> None:
    """The per-example values of a cell's endpoints, and with ``per_example`` of every point of its
    curves (``rows.curve_examples``), into the sweep's examples table; each file once, as the artifacts
    it copies are written once. A model without values (failed, or stored before they were) or a failed
    curve gets a file of no rows, so that the cell counts done."""
    store, sweep = grid.store, grid.spec.name
    ident = {"sweep": sweep, "spec_hash": grid.spec_hash}
    files = [(e.key, lambda e=e: table_rows.endpoint_examples(store, e)) for e in endpoints]
    if grid.per_example:
        files += [(c.key, lambda c=c: table_rows.curve_examples(store, c) if c in evaluated else []) for c in curves]
    for key, parts_of in files:
        if not store.has_table(sweep, "examples", key):
            write_examples(store, sweep, [({**ident, **identity}, values) for identity, values in parts_of()], key)


def write_pathway_table(grid: Grid, endpoint) -> None:
    """A pathway endpoint beside its source and the retrained model; once per endpoint."""
    store, sweep = grid.store, grid.spec.name
    if store.has_table(sweep, "pathway", endpoint.key):
        return
    ident = {"sweep": sweep, "spec_hash": grid.spec_hash}
    rows = table_rows.pathway_rows(store, endpoint, grid.plan.endpoints[endpoint.source].method)
    write_table(store, sweep, "pathway", [{**ident, **row} for row in rows], endpoint.key)


def write_reference_tables(grid: Grid, original, retrained) -> None:
    """The original and the retrained model at one ratio, the figures' reference lines: their rows
    (references table) and per-example values (examples table, the same key); each file once, both
    from one evaluation of the original."""
    store, sweep = grid.store, grid.spec.name
    missing = [name for name in ("references", "examples") if not store.has_table(sweep, name, retrained.key)]
    if not missing:
        return
    rows, parts = reference_rows(grid, original, retrained)
    if "examples" in missing:
        write_examples(store, sweep, parts, retrained.key)
    if "references" in missing:
        write_table(store, sweep, "references", rows, retrained.key)


def reference_rows(grid: Grid, original, retrained) -> tuple[list[dict], list]:
    """The original and the retrained model at one ratio: their references rows and their examples
    parts; the original evaluated on an evaluation worker (its GPU, when eval_gpus asks for one),
    outside the trial's placement group."""
    res = grid.spec.resources
    evaluated = evaluate_original_task.options(scheduling_strategy="DEFAULT", num_cpus=res.eval_cpus,
                                               num_gpus=res.eval_gpus).remote(grid.store.uri, original, retrained,
                                                                              res.eval_cpus)
    return table_rows.reference_rows(grid.spec.name, grid.spec_hash, grid.store, original, retrained, *ray.get(evaluated))


# ----------------------------------------------------------------------------- the grid


class Progress(tune.Callback):
    """One line per finished cell for the person at the terminal (cells done / running / failed and
    an ETA); frees a failed trial's claims.

    ETA = mean seconds of the cells this run finished x cells left / cells in flight (the most
    seen running at once): simple, and it settles as cells finish (the first cells also train
    the shared original and retrained models, so early ETAs run high).
    """

    def __init__(self, total: int, done_before: int, storage: str):
        self.total, self.done, self.storage, self.started = total, done_before, storage, time.time()
        self.failed, self.cell_seconds, self.in_flight = 0, [], 1

    def status(self, trials, finished) -> str:
        """``[done/total done, running, failed, ETA]``, ``finished`` (a trial ending now) not counted as running."""
        running = sum(1 for t in trials if t is not finished and t.status == "RUNNING")
        self.in_flight = max(self.in_flight, running + 1)
        left = self.total - self.done - self.failed
        eta = "?"
        if self.cell_seconds:
            eta = self.duration(sum(self.cell_seconds) / len(self.cell_seconds) * left / self.in_flight)
        return f"[{self.done}/{self.total} done, {running} running, {self.failed} failed, ETA {eta}]"

    @staticmethod
    def duration(seconds: float) -> str:
        """Seconds as 42s, 3m05s or 2h10m."""
        minutes, hours = int(seconds // 60), int(seconds // 3600)
        if hours:
            return f"{hours}h{minutes % 60:02d}m"
        return f"{minutes}m{int(seconds % 60):02d}s" if minutes else f"{seconds:.0f}s"

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.done += 1
        cfg, res = trial.config["cell"], trial.last_result or {}
        if "cell_seconds" in res:
            self.cell_seconds.append(res["cell_seconds"])
        # the report's words: MCU, or barrier (retain side), cliff (forget side), barrier + cliff
        verdicts = " ".join(f"{k[4:]}={'failed' if v is None else res[f'verdict_{k[4:]}']}"
                            for k, v in res.items() if k.startswith("mcu_"))
        print(f"{self.status(trials, trial)} {cfg['task']} {cfg['setting']:<13} {cfg['methods']:<9} "
              f"ratio={cfg['ratio']:g}% seed={cfg['seed']}  {verdicts}  "
              f"({res.get('cell_seconds', 0):.1f}s, elapsed {time.time() - self.started:.0f}s)", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.failed += 1
        try:
            actor = ray.get_actor(coordinator_name(self.storage), namespace=NAMESPACE)
            ray.get(actor.release_owner.remote(trial.config["cell"]["key"]))
        except ValueError:
            pass
        print(f"{self.status(trials, trial)} [error] cell {trial.config['cell']['key']} failed; "
              f"see {trial.local_path}", flush=True)


def interleave_tasks(cells: list) -> list:
    """Cells of different tasks in turn, so a slow task's cells do not all wait at the end."""
    by_task: dict = {}
    for cell in cells:
        by_task.setdefault(cell.task, []).append(cell)
    queues = list(by_task.values())
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


def concurrency(res, cluster_cpus: float) -> int:
    """Trials in flight, capped so that their CPUs leave room for one evaluation task.

    Trials wait on evaluation tasks scheduled outside their placement groups; if the
    trials held every CPU, those tasks could never start. An autoscaling cluster may
    grow, so the cap uses what is there now and says so.
    """
    wanted = res.max_concurrent_trials
    if res.trial_cpus <= 0 or cluster_cpus <= 0:
        return wanted
    fits = int((cluster_cpus - res.eval_cpus) // res.trial_cpus)
    if fits < wanted:
        print(f"note: {cluster_cpus:g} CPUs fit {max(fits, 1)} trials of {res.trial_cpus:g} CPU beside an evaluation "
              f"task of {res.eval_cpus:g}; running {max(fits, 1)} at a time instead of {wanted}", flush=True)
    return max(1, min(wanted, fits))


def cell_config(cell: Cell, plan: Plan) -> dict:
    e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
    return {"key": cell.key, "task": cell.task, "setting": cell.setting, "methods": f"{e1.method}/{e2.method}",
            "ratio": cell.ratio, "seed": cell.seed}


def run_grid(spec: SweepSpec, plan: Plan, storage: str, per_example: bool = False) -> dict:
    """Run every cell not yet done as a Tune trial; return counts of what happened.

    ``per_example``: also store the per-example values of every curve point. A cell done without them
    runs again: its curves' interior points are evaluated once more for them alone (nothing is trained,
    its results and barriers are kept)."""
    storage = Store(storage).uri  # absolute: Tune, Train and every worker resolve it alike
    grid = Grid(spec, plan, storage, spec_hash(spec), per_example)
    store = grid.store
    todo = interleave_tasks([c for c in plan.cells if not store.cell_done(
        spec.name, c.key, [key for _, key in c.curves] if per_example else ())])
    done_before = len(plan.cells) - len(todo)
    if done_before:
        print(f"{done_before} of {len(plan.cells)} cells already have results; running the other {len(todo)}", flush=True)
    again = sum(store.cell_done(spec.name, c.key) for c in todo)
    if again:
        print(f"--per-example: {again} of the {len(todo)} cells to run have results but not the per-example values "
              f"of their curve points; evaluating those points again for them, nothing else", flush=True)
    if not todo:
        return {"cells_run": 0, "cells_failed": 0, "cells_skipped": done_before}
    coordinator = start_coordinator(storage)  # noqa: F841 (held until the trials are done)
    res = spec.resources
    trainable = tune.with_resources(tune.with_parameters(run_cell, grid=grid), {"cpu": res.trial_cpus})
    tuner = tune.Tuner(
        trainable,
        param_space={"cell": tune.grid_search([cell_config(c, plan) for c in todo])},
        tune_config=tune.TuneConfig(max_concurrent_trials=concurrency(res, ray.cluster_resources().get("CPU", 0)),
                                    reuse_actors=True,  # no process start-up (torch import) per cell
                                    trial_name_creator=trial_name),
        run_config=tune.RunConfig(
            name="tune", storage_path=f"{storage.rstrip('/')}/{spec.name}",
            failure_config=tune.FailureConfig(max_failures=res.max_failures),
            callbacks=[Progress(len(plan.cells), done_before, storage),
                       *tracking_callbacks(spec.tracking, storage, spec.name, grid.spec_hash)], verbose=0),
    )
    results = tuner.fit()
    failed = sum(1 for r in results if r.error is not None)
    return {"cells_run": len(todo) - failed, "cells_failed": failed, "cells_skipped": done_before}
