"""The sweep command's own rules, without running a grid: flags that cannot go together, ``--only``
filters (checked against the plan's cells, matched as documented), the plan record the report reads,
the dry run's lines and GPU requests a local Ray cannot meet. (The command end to end: tests/test_cli.py.)"""
import json

import pytest

from mcu_ray import sweep
from mcu_ray.plan import make_plan
from mcu_ray.errors import SpecError
from mcu_ray.spec import load_spec, parse_spec
from tests.helpers import REPO, tiny_digits_task


@pytest.fixture(scope="module")
def plan():
    """Rand: ga/ga, rl/rl; Met: ga/rl, rl/ga; one ratio (5) and seed (0); linear and Bezier curves."""
    return make_plan(parse_spec({"name": "w", "settings": ["Rand", "Met"], "tasks": [tiny_digits_task()]}))


def test_flags_that_cannot_go_together_are_all_named():
    args = sweep.parse_args(["s.yaml", "--json", "--estimate", "--restart", "--only", "seed=0"])
    assert [p.split(":")[0] for p in sweep.flag_problems(args)] == ["--json", "--estimate", "--restart"]
    assert sweep.flag_problems(sweep.parse_args(["s.yaml", "--dry-run", "--json"])) == []


def test_only_selects_by_method_either_end_or_an_ordered_pair(plan):
    def pairs(conditions):  # the method pairs of the cells selected
        fields = [sweep.cell_fields(cell, plan) for cell in sweep.select(plan, conditions).cells]
        return sorted((f["method_1"], f["method_2"]) for f in fields)

    assert pairs(sweep.parse_only(["method=ga"], plan)) == [("ga", "ga"), ("ga", "rl"), ("rl", "ga")]
    assert pairs(sweep.parse_only(["method=rl/ga"], plan)) == [("rl", "ga")]
    assert pairs(sweep.parse_only(["setting=Rand", "setting=Met,method=ga/rl"], plan)) == [
        ("ga", "ga"), ("ga", "rl"), ("rl", "rl")]  # repeated flags: any of them
    assert sweep.parse_only(["ratio=5,seed=0"], plan) == [{"ratio": 5.0, "seed": 0}]


@pytest.mark.parametrize("text,field,words", [
    ("metod=ga", "--only", "did you mean 'method'"),
    ("method=npo", "--only method", "it has: ga, rl"),
    ("ratio=10", "--only ratio", "it has: 5"),
    ("seed=x", "--only seed", "it has: 0"),
])
def test_a_bad_only_names_the_filter_and_what_the_sweep_has(plan, text, field, words):
    with pytest.raises(SpecError) as err:
        sweep.parse_only([text], plan)
    assert err.value.path == field and words in str(err.value)


def test_filters_that_match_nothing_together_are_refused(plan):
    with pytest.raises(SpecError, match="selects no cell"):
        sweep.parse_only(["setting=Rand,method=ga/rl"], plan)


def test_the_plan_record_names_each_cells_fields_and_artifacts():
    """What spec.json keeps and the report's list of missing cells reads: every planned cell, its methods,
    and the artifacts whose recorded failure explains why it has no rows (the quickstart sweep)."""
    plan = make_plan(load_spec(REPO / "sweeps" / "quickstart.yaml"))
    record = json.loads(json.dumps(sweep.plan_record(plan)))  # as spec.json holds it
    assert [c["key"] for c in record["cell_list"]] == record["cells"] == [c.key for c in plan.cells]
    assert record["models"] == [*plan.originals, *plan.retrained]
    for cell, listed in zip(plan.cells, record["cell_list"]):
        e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
        assert (listed["method_1"], listed["method_2"], listed["setting"], listed["ratio"], listed["seed"]) == (
            e1.method, e2.method, cell.setting, cell.ratio, cell.seed)
        curves = dict(cell.curves)
        assert listed["artifacts"] == [e1.original, cell.retrained, e1.key, e2.key,
                                       curves["bezier"].replace("curve-", "bend-"), curves["linear"], curves["bezier"]]


def test_the_dry_run_lines_group_cells_by_task_and_setting():
    cells = [{"task": "digits", "setting": "Rand", "method_1": "ga", "method_2": "ga", "ratio": 5.0, "seed": 0,
              "key": "cell-1", "status": "done"},
             {"task": "digits", "setting": "Rand", "method_1": "rl", "method_2": "rl", "ratio": 5.0, "seed": 0,
              "key": "cell-2", "status": "pending"}]
    assert sweep.tally(cells) == "1 done, 1 pending"
    assert sweep.format_cells(cells).splitlines() == [
        "digits Rand: 2 cells, 1 done, 1 pending",
        "  done     ga/ga         ratio=5% seed=0  cell-1",
        "  pending  rl/rl         ratio=5% seed=0  cell-2"]


def test_a_local_ray_without_gpus_refuses_gpu_requests():
    spec = parse_spec({"name": "g", "settings": ["Rand"], "tasks": [tiny_digits_task()],
                       "resources": {"eval_gpus": 0.5}})
    with pytest.raises(SpecError) as err:
        sweep.check_gpus(spec, gpus=0, local=True)
    assert err.value.path == "resources.eval_gpus"
    sweep.check_gpus(spec, gpus=1, local=True)  # a GPU there: nothing to refuse
