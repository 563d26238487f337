from dataclasses import replace

from mcu_ray.plan import SETTINGS_TABLE, make_plan
from mcu_ray.spec import SETTINGS, parse_spec
from tests.helpers import tiny_digits_task


def four_method_spec(settings=SETTINGS, seeds=(0,)):
    """A digits spec with 4 methods."""
    return parse_spec({"name": "t", "settings": list(settings), "seeds": list(seeds),
                       "tasks": [tiny_digits_task(methods=["ga", "rl", "gd", "npo"])]})


def test_all_ten_settings_four_methods():
    plan = make_plan(four_method_spec())
    counts = plan.counts()
    # Rand-type: 5 settings x 4 methods; Met-type: 5 settings x 12 ordered pairs
    assert counts["cells"] == 5 * 4 + 5 * 12 == 80
    # per method: (FO,s), (FO,s+1), (CL,s), (CL,s+1), (SO,s), (SO,s+1)
    assert counts["endpoints"] == 24
    assert counts["originals"] == 1 and counts["retrained"] == 1


def test_met_settings_use_ordered_distinct_pairs():
    plan = make_plan(four_method_spec(settings=["Met"]))
    pairs = [(plan.endpoints[c.endpoint_1].method, plan.endpoints[c.endpoint_2].method) for c in plan.cells]
    assert len(pairs) == len(set(pairs)) == 12
    assert all(m1 != m2 for m1, m2 in pairs)
    assert ("ga", "rl") in pairs and ("rl", "ga") in pairs


def test_linear_curve_shared_by_both_orders_bezier_not():
    plan = make_plan(four_method_spec(settings=["Met"]))
    by_pair = {(plan.endpoints[c.endpoint_1].method, plan.endpoints[c.endpoint_2].method): dict(c.curves)
               for c in plan.cells}
    assert by_pair[("ga", "rl")]["linear"] == by_pair[("rl", "ga")]["linear"]
    assert by_pair[("ga", "rl")]["bezier"] != by_pair[("rl", "ga")]["bezier"]
    # 6 unordered pairs share linear curves; 12 ordered pairs have their own Bezier curve
    assert plan.counts()["curves"] == 6 + 12
    bezier = plan.curves[by_pair[("rl", "ga")]["bezier"]]
    assert bezier.objective == "rl"  # the first endpoint's method trains the bend


def test_settings_table_variants():
    plan = make_plan(four_method_spec())
    for cell in plan.cells:
        e1, e2 = plan.endpoints[cell.endpoint_1], plan.endpoints[cell.endpoint_2]
        pairing, v1, v2 = SETTINGS_TABLE[cell.setting]
        assert (e1.optimizer, e1.curriculum, e1.seed - cell.seed) == (v1.optimizer, v1.curriculum, v1.seed_offset)
        assert (e2.optimizer, e2.curriculum, e2.seed - cell.seed) == (v2.optimizer, v2.curriculum, v2.seed_offset)
        assert (e1.method == e2.method) == (pairing == "same")
    rand_so = next(c for c in plan.cells if c.setting == "Rand-SO")
    assert plan.endpoints[rand_so.endpoint_1].optimizer == "so"
    assert plan.endpoints[rand_so.endpoint_2].seed == rand_so.seed + 1


def test_artifacts_shared_across_cells_and_keys_stable():
    plan_a, plan_b = make_plan(four_method_spec()), make_plan(four_method_spec())
    assert set(plan_a.endpoints) == set(plan_b.endpoints)
    # the Rand FO endpoint of seed s is the one Met, Met-CL-Non-CL, FO-SO... also use
    used = {}
    for cell in plan_a.cells:
        for key in (cell.endpoint_1, cell.endpoint_2):
            used.setdefault(key, set()).add(cell.setting)
    assert max(len(s) for s in used.values()) >= 5


def test_hparams_and_ratio_change_keys():
    spec = four_method_spec(settings=["Rand"])
    base = make_plan(spec)
    task = spec.tasks[0]
    ga = task.hparams["ga"]
    changed = replace(spec, tasks=(replace(task, hparams={**task.hparams, "ga": {**ga, "params": {**ga["params"], "lr": 0.5}}}),))
    other = make_plan(changed)
    ga_keys = {k for k, e in base.endpoints.items() if e.method == "ga"}
    assert ga_keys.isdisjoint(other.endpoints)  # ga's endpoints are new
    rl_keys = {k for k, e in base.endpoints.items() if e.method == "rl"}
    assert rl_keys <= set(other.endpoints)  # rl's are reused


def test_seeds_multiply_cells_and_share_offsets():
    plan = make_plan(four_method_spec(settings=["Rand"], seeds=(0, 1)))
    assert plan.counts()["cells"] == 8
    # seed 0 uses seeds {0, 1}, seed 1 uses {1, 2}: the seed-1 FO endpoint is shared
    assert plan.counts()["endpoints"] == 4 * 3


def test_subset_keeps_exactly_the_artifacts_its_cells_need():
    """The Rand cells of a Rand + Met plan need what a Rand-only plan has, no more (--only)."""
    both, rand = make_plan(four_method_spec(settings=["Rand", "Met"])), make_plan(four_method_spec(settings=["Rand"]))
    subset = both.subset([c for c in both.cells if c.setting == "Rand"])
    assert [c.key for c in subset.cells] == [c.key for c in rand.cells]
    for table in ("originals", "retrained", "endpoints", "curves"):
        assert list(getattr(subset, table)) == list(getattr(rand, table))
    assert subset.counts() == rand.counts()
