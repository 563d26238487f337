"""Small grids on a local Ray cluster: dedup under concurrency, end to end, rerun."""
import collections
import time

import pytest
import ray

from mcu_ray import load
from mcu_ray.plan import make_plan
from mcu_ray.runner import BuildCoordinator, Grid, coordinator_name, ensure, run_grid, NAMESPACE
from mcu_ray.spec import parse_spec
from mcu_ray.store import State, Store
from mcu_ray.tables import read_table
from mcu_ray.tasks import TASKS
from tests.helpers import tiny_digits_task

pytestmark = pytest.mark.ray


def tiny_spec(**top):
    return parse_spec({"name": "grid", "settings": ["Rand", "Met"], "points": 4, "tasks": [tiny_digits_task()],
                       "resources": {"max_concurrent_trials": 2, "trial_cpus": 0.5, "eval_cpus": 0.5}, **top})


def test_concurrent_ensure_builds_once(ray_cluster, tmp_path):
    spec = tiny_spec()
    grid = Grid(spec, make_plan(spec), str(tmp_path), "h")
    coordinator = BuildCoordinator.options(name=coordinator_name(grid.storage), namespace=NAMESPACE).remote()
    ray.get(coordinator.ready.remote())  # registered under its name before anyone looks it up

    @ray.remote(num_cpus=0)
    def contender(owner: str) -> str:
        def build():
            grid.store.record_job("ep-shared", "endpoint")
            time.sleep(1.0)  # long enough for every contender to arrive while it is being built
            grid.store.save_artifact("ep-shared", {"builder": owner})

        ensure(grid, owner, {"ep-shared": build})
        return grid.store.read_meta("ep-shared")["builder"]

    builders = ray.get([contender.remote(f"cell-{i}") for i in range(4)])
    assert len(set(builders)) == 1  # all four saw the same artifact
    assert [r["key"] for r in grid.store.job_records()] == ["ep-shared"]


def worst_deviation(rows: list[dict], cell: str, curve: str, metric: str, direction: int) -> float:
    """The largest signed distance of a curve's metric from the chord between its ends, positive when worse
    (Eq. 3/4): chord(t) - v(t) for a metric where higher is better, v(t) - chord(t) where lower is."""
    points = sorted((r["t"], r[metric]) for r in rows if r["cell_id"] == cell and r["curve"] == curve)
    (_, start), (_, end) = points[0], points[-1]
    return max(direction * ((1 - t) * start + t * end - value) for t, value in points)


def test_small_grid_end_to_end_and_rerun(ray_cluster, tmp_path):
    spec = tiny_spec()
    plan = make_plan(spec)
    storage = str(tmp_path / "store")
    outcome = run_grid(spec, plan, storage)
    assert outcome == {"cells_run": 4, "cells_failed": 0, "cells_skipped": 0}

    store = Store(storage)
    rows = read_table(store, "grid", "results").to_pylist()
    per_point = collections.Counter((r["cell_id"], r["curve"], r["t"]) for r in rows)
    expected = {(c.key, kind, round(t, 6)) for c in plan.cells for kind, _ in c.curves for t in (0, 1 / 3, 2 / 3, 1)}
    assert len(rows) == len(expected) == 4 * 2 * 4
    assert set(per_point) == expected  # none missing
    assert set(per_point.values()) == {1}  # none duplicated
    assert all(r["status"] == "ok" for r in rows)
    assert {r["setting"] for r in rows} == {"Rand", "Met"}

    barriers = read_table(store, "grid", "barriers").to_pylist()
    directions = TASKS["digits"].metric_directions
    assert len(barriers) == 4 * 2 * len(directions)  # cells x curves x metrics
    deviations = {(r["cell_id"], r["curve"], r["metric"]): r["deviation"] for r in barriers}
    for (cell, curve, metric), deviation in deviations.items():
        # the rows' t are rounded to 6 decimals, the stored deviations were computed on the exact ones
        assert deviation == pytest.approx(worst_deviation(rows, cell, curve, metric, directions[metric]),
                                          rel=1e-4, abs=1e-6)
    verdicts = load(storage, "grid", "verdicts")  # one per curve, decided when read
    assert len(verdicts) == 4 * 2
    for v in verdicts.itertuples():  # B_r is the retain loss's deviation, B_f the forget loss's
        assert (v.retain_barrier, v.forget_barrier) == (deviations[v.cell_id, v.curve, "loss_retain"],
                                                       deviations[v.cell_id, v.curve, "loss_forget"])

    # every artifact trained exactly once although two trials ran at a time and shared them
    jobs = collections.Counter(r["key"] for r in store.job_records())
    counts = plan.counts()
    assert set(jobs.values()) == {1}
    assert len(jobs) == counts["training_jobs"] + counts["curves"]  # + one evaluation batch per curve

    references = read_table(store, "grid", "references").to_pylist()
    assert sorted(r["model"] for r in references) == ["original", "retrained"]

    again = run_grid(spec, plan, storage)
    assert again == {"cells_run": 0, "cells_failed": 0, "cells_skipped": 4}
    assert len(store.job_records()) == sum(jobs.values())


def test_tofu_cells_and_pathway_unlearning_run_through_the_same_grid(ray_cluster, tmp_path):
    """TOFU cells, one of them pathway unlearning from GD: Train jobs, t-point tasks and Parquet
    rows, as for digits; the pathway endpoints are built after their sources and compared with them."""
    spec = parse_spec({"name": "lm", "settings": ["Rand"], "points": 3, "tasks": [{
        "name": "tofu", "ratios": [10], "methods": ["gd", "pathway_gd"],
        "options": {"synthetic_authors": 5, "eval_size": 8, "n_embd": 32, "n_layer": 1, "vocab_size": 400,
                    "epochs": 5, "max_new_tokens": 8},
        "hparams": {"gd": {"epochs": 1}, "pathway_gd": {"epochs": 1, "select_points": 4}},
        "curve_fit": {"epochs": 1}}],
        "resources": {"max_concurrent_trials": 2, "trial_cpus": 0.5, "eval_cpus": 0.5}})
    plan = make_plan(spec)
    storage = str(tmp_path / "store")
    assert run_grid(spec, plan, storage)["cells_run"] == 2
    store = Store(storage)
    rows = read_table(store, "lm", "results").to_pylist()
    assert len(rows) == 2 * 2 * 3  # 2 cells, linear and bezier, 3 points each
    assert {"forget_quality", "model_utility", "rouge_forget", "loss_retain"} <= set(rows[0])
    for r in (r for r in rows if r["t"] in (0.0, 1.0)):  # a curve's ends are its endpoints, as evaluated
        cell = next(c for c in plan.cells if c.key == r["cell_id"])
        endpoint = cell.endpoint_1 if r["t"] == 0.0 else cell.endpoint_2
        assert r["forget_quality"] == pytest.approx(store.read_meta(endpoint)["metrics"]["forget_quality"])
    assert {r["method_1"] for r in rows} == {"gd", "pathway_gd"}

    # each pathway endpoint (seeds 0 and 1) beside its GD source and the retrained model
    pathway = read_table(store, "lm", "pathway").to_pylist()
    compared = [r for r in pathway if r["model"] != "curve"]
    assert sorted((r["seed"], r["model"]) for r in compared) == [
        (s, m) for s in (0, 1) for m in ("original", "pathway", "retrained", "source")]
    assert {r["source_method"] for r in pathway} == {"gd"}
    for r in pathway:  # the endpoint's t*, chosen in [search_from, 1]
        chosen = store.read_meta(r["endpoint"])["pathway"]
        assert r["t_star"] == chosen["t_star"] and chosen["search_from"] <= r["t_star"] <= 1
    assert len([r for r in pathway if r["model"] == "curve"]) == 2 * 4
    for e in (e for e in plan.endpoints.values() if e.source):
        meta = store.read_meta(e.key)
        mine = [r for r in pathway if r["endpoint"] == e.key]
        # t*, chosen without the retrained model, is no further from its targets (the original's accuracies)
        # than any evaluated point of [search_from, 1]
        window = [r["selection_gap"] for r in mine
                  if r["model"] == "curve" and r["t"] >= meta["pathway"]["search_from"]]
        assert meta["pathway"]["selection_gap"] <= min(window) + 1e-9
        source_row = next(r for r in mine if r["model"] == "source")
        assert source_row["forget_quality"] == store.read_meta(e.source)["metrics"]["forget_quality"]
        assert next(r for r in mine if r["model"] == "retrained")["gap_to_retrained"] == 0
    started = {r["key"]: r["started_at"] for r in store.job_records()}
    for e in plan.endpoints.values():  # a source is stored before the pathway endpoint that needs it starts
        if e.source:
            assert store.read_meta(e.source)["written_at"] <= started[e.key]


def test_diverged_endpoint_is_recorded_and_the_grid_goes_on(ray_cluster, tmp_path):
    """GA with a huge learning rate blows up: its cells are kept as 'diverged', the rest run."""
    spec = parse_spec({"name": "div", "settings": ["Rand", "Met"], "points": 3, "tasks": [
        tiny_digits_task(hparams={"ga": {"steps": 20, "lr": 1e12}, "rl": {"epochs": 1}})],
        "resources": {"max_concurrent_trials": 2, "trial_cpus": 0.5, "eval_cpus": 0.5}})
    plan = make_plan(spec)
    storage = str(tmp_path / "store")
    assert run_grid(spec, plan, storage)["cells_failed"] == 0
    store = Store(storage)
    ga = [e for e in plan.endpoints.values() if e.method == "ga"]
    assert all(store.read_meta(e.key)["status"] == "diverged" for e in ga)
    assert "loss is" in store.read_meta(ga[0].key)["reason"]
    rows = read_table(store, "div", "results").to_pylist()
    assert len(rows) == 4 * 2 * 3  # every planned (cell, curve, t) is there
    by_status = collections.Counter((r["method_1"], r["method_2"], r["status"]) for r in rows)
    assert by_status == {("rl", "rl", "ok"): 6, ("ga", "ga", "diverged"): 6, ("ga", "rl", "diverged"): 6,
                         ("rl", "ga", "diverged"): 6}

    from mcu_ray.report import build_report

    index = build_report(storage, "div", str(tmp_path / "report"))
    assert "diverged" in open(index).read()


def test_pathway_cells_after_a_failed_source_or_original_are_recorded_as_diverged(ray_cluster, tmp_path):
    """A pathway endpoint inherits its source's or the original's failure; the grid goes on."""
    for name, task in (("source", tiny_digits_task(methods=["ga", "pathway_ga"],
                                                   hparams={"ga": {"steps": 20, "lr": 1e12}})),
                       ("original", tiny_digits_task(methods=["ga", "pathway_ga"], options={"epochs": 2, "lr": 1e12},
                                                     hparams={"ga": {"epochs": 1}}))):
        spec = parse_spec({"name": name, "settings": ["Rand"], "points": 3, "tasks": [task],
                           "resources": {"max_concurrent_trials": 2, "trial_cpus": 0.5, "eval_cpus": 0.5}})
        plan = make_plan(spec)
        storage = str(tmp_path / name)
        assert run_grid(spec, plan, storage) == {"cells_run": 2, "cells_failed": 0, "cells_skipped": 0}
        store = Store(storage)
        rows = read_table(store, name, "results").to_pylist()
        assert len(rows) == 2 * 2 * 3 and {r["status"] for r in rows} == {"diverged"}, name
        assert read_table(store, name, "pathway").num_rows == 0  # nothing to compare
    pathway_ep = next(e for e in plan.endpoints.values() if e.source)
    assert not Store(str(tmp_path / "original")).has_artifact(pathway_ep.key)  # never built after a failed original


def test_corrupt_artifact_and_torn_result_are_recomputed(ray_cluster, tmp_path):
    spec = tiny_spec(settings=["Rand"], points=3)
    plan = make_plan(spec)
    storage = str(tmp_path / "store")
    run_grid(spec, plan, storage)
    store = Store(storage)
    endpoint = next(iter(plan.endpoints))
    weights = tmp_path / "store" / "artifacts" / endpoint / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    cell = next(c for c in plan.cells if endpoint in (c.endpoint_1, c.endpoint_2))
    result = next((tmp_path / "store" / "grid" / "results").rglob(f"{cell.key}.parquet"))
    result.write_bytes(result.read_bytes()[:50])  # a torn result file
    before = collections.Counter(r["key"] for r in store.job_records())
    again = run_grid(spec, plan, storage)
    assert again["cells_run"] == 1 and again["cells_skipped"] == 1
    assert store.status(endpoint).state is State.HEALTHY  # rebuilt whole
    after = collections.Counter(r["key"] for r in store.job_records())
    assert after[endpoint] == before[endpoint] + 1  # only the corrupt artifact was retrained
    assert all(after[k] == n for k, n in before.items() if k != endpoint and not k.startswith("curve-"))
    rows = read_table(store, "grid", "results").to_pylist()
    assert len(rows) == 2 * 2 * 3 and all(r["status"] == "ok" for r in rows)
