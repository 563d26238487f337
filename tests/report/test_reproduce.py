"""Reproducing one cell (``report.reproduce``, ``--reproduce``) without Ray: spec.json gives back the plan,
each cell's excerpt plans that cell alone under its ``--only``, a cell id may be a unique prefix, and the
warnings name code other than this checkout's clean commit. (The command on a real grid: tests/test_provenance.py.)"""
from __future__ import annotations

import json

import pytest
import yaml

from mcu_ray.plan import make_plan
from mcu_ray.report.reproduce import (
    ReproduceError, check_excerpt, code_warnings, excerpt, find_cell, only_filter, reproduce, stored_spec,
)
from mcu_ray.spec import load_spec, spec_to_dict
from tests.helpers import REPO


def test_warnings_name_another_commit_and_dirty_trees():
    clean = {"code_commit": "abc", "code_dirty": False}
    assert code_warnings({"endpoint ep-1": clean}, clean) == []
    other = code_warnings({"endpoint ep-1": {"code_commit": "def", "code_dirty": False}}, clean)
    assert len(other) == 1 and "git checkout def" in other[0] and "this checkout is at abc" in other[0]
    dirty = code_warnings({"endpoint ep-1": {"code_commit": "abc", "code_dirty": True}, "results rows": clean}, clean)
    assert len(dirty) == 1 and "dirty tree" in dirty[0] and "endpoint ep-1" in dirty[0]
    here = code_warnings({"results rows": clean}, {"code_commit": "abc", "code_dirty": True})
    assert len(here) == 1 and "this checkout has uncommitted changes" in here[0]


@pytest.mark.parametrize("name", ["quickstart.yaml", "pathway_digits.yaml", "full_grid.yaml"])
def test_spec_json_gives_back_the_same_plan(name):
    spec = load_spec(REPO / "sweeps" / name)
    stored = json.loads(json.dumps(spec_to_dict(spec), default=str))  # as spec.json holds it
    assert [c.key for c in make_plan(stored_spec(stored)).cells] == [c.key for c in make_plan(spec).cells]


@pytest.mark.parametrize("name", ["quickstart.yaml", "pathway_digits.yaml"])
def test_every_cells_excerpt_plans_that_cell_alone(name):
    """Every setting of Table 1 (same-method and ordered pairs, CL, SO), TOFU, pathway methods."""
    spec = load_spec(REPO / "sweeps" / name)
    plan = make_plan(spec)
    for cell in plan.cells:
        doc = excerpt(spec, plan, cell, "fresh")
        assert doc["seeds"] == [cell.seed] and doc["tasks"][0]["ratios"] == [cell.ratio]
        check_excerpt(yaml.safe_load(yaml.safe_dump(doc)), only_filter(cell, plan), cell.key)  # raises if not


def test_reproduce_refuses_a_folder_without_a_sweep_file(tmp_path):
    with pytest.raises(ReproduceError, match="spec.json"):
        reproduce(str(tmp_path), "prov", "cell-0")


def test_a_cell_is_found_by_its_id_or_a_unique_prefix():
    plan = make_plan(load_spec(REPO / "sweeps" / "quickstart.yaml"))
    cell = plan.cells[0]
    assert find_cell(plan, cell.key) is cell
    unique = next(n for n in range(len("cell-") + 1, len(cell.key))
                  if sum(c.key.startswith(cell.key[:n]) for c in plan.cells) == 1)
    assert find_cell(plan, cell.key[:unique]) is cell
    with pytest.raises(ReproduceError, match="several cells start with it"):
        find_cell(plan, "cell-")
    with pytest.raises(ReproduceError, match="no such cell"):
        find_cell(plan, "cell-zzzz")
