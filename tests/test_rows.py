"""The rows of a cell's tables, read back from a store built without Ray (``mcu_ray.rows``)."""
import math

import pytest
import torch

from mcu_ray.metrics import METRICS
from mcu_ray.plan import make_plan
from mcu_ray.rows import cell_rows
from mcu_ray.spec import parse_spec
from mcu_ray.store import Store
from tests.helpers import build_models, tiny_digits_task


@pytest.fixture(scope="module")
def cell_store(tmp_path_factory):
    """A Met GA/RL cell on digits with its linear and Bezier curves, 4 points each, built by the jobs."""
    torch.set_num_threads(1)
    task = tiny_digits_task(ratios=[10], options={"epochs": 4, "width": 8},
                            hparams={"ga": {"epochs": 2, "lr": 3e-4}, "rl": {"epochs": 2, "lr": 3e-3}})
    spec = parse_spec({"name": "rows", "settings": ["Met"], "points": 4, "tasks": [task]})
    plan, store = make_plan(spec), Store(str(tmp_path_factory.mktemp("store")))
    build_models(store, plan, plan.curves.values())
    return spec, plan, store


def test_a_cells_rows_are_its_curves_points_and_its_barriers_their_chord_deviations(cell_store):
    spec, plan, store = cell_store
    cell = plan.cells[0]
    rows, barriers, summary = cell_rows(plan, spec, "hash", store, cell)
    assert len(rows) == len(cell.curves) * 4 and {r["status"] for r in rows} == {"ok"}
    ends = [store.read_meta(cell.endpoint_1)["metrics"], store.read_meta(cell.endpoint_2)["metrics"]]
    for kind, key in cell.curves:
        points = sorted((r for r in rows if r["curve"] == kind), key=lambda r: r["t"])
        assert [r["t"] for r in points] == pytest.approx([0, 1 / 3, 2 / 3, 1])
        assert {m: points[0][m] for m in ends[0]} == ends[0] and {m: points[-1][m] for m in ends[1]} == ends[1]
        for b in (b for b in barriers if b["curve"] == kind):
            # the paper's chord deviation, signed so that positive is bad, recomputed from the rows
            sign = METRICS[b["metric"]].sign
            values = [r[b["metric"]] for r in points]
            chord = [(1 - r["t"]) * values[0] + r["t"] * values[-1] for r in points]
            worst = max(sign * (c - v) for c, v in zip(chord, values))
            assert b["deviation"] == pytest.approx(worst, abs=1e-6), (kind, b["metric"])  # rows hold t to 6 digits
        assert summary[f"retain_barrier_{kind}"] == pytest.approx(
            next(b["deviation"] for b in barriers if b["curve"] == kind and b["metric"] == "loss_retain"))
    assert all(r["spec_hash"] == "hash" and r["cell_id"] == cell.key for r in rows + barriers)


def test_a_cell_whose_endpoint_diverged_keeps_its_rows_as_nan(cell_store, tmp_path):
    spec, plan, store = cell_store
    cell = plan.cells[0]
    broken = Store(str(tmp_path))
    for key in {cell.retrained, plan.endpoints[cell.endpoint_1].original, cell.endpoint_1}:
        broken.save_artifact(key, store.read_meta(key), weights=store.load_weights(key))
    broken.save_artifact(cell.endpoint_2, {"kind": "endpoint", "status": "diverged", "reason": "loss is nan at step 3"})
    rows, barriers, summary = cell_rows(plan, spec, "hash", broken, cell)
    assert len(rows) == len(cell.curves) * 4 and {r["status"] for r in rows} == {"diverged"}
    assert all("loss is nan at step 3" in r["reason"] for r in rows)
    assert all(math.isnan(r["acc_forget"]) for r in rows)
    assert {summary[f"status_{kind}"] for kind, _ in cell.curves} == {"diverged"}
