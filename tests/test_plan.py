import ast
import hashlib
import json
from dataclasses import replace

from mcu_ray.methods import METHODS
from mcu_ray.methods.curriculum import CurriculumParams
from mcu_ray.methods.optimizers import SophiaParams
from mcu_ray.plan import SCIENCE_VERSION, SETTINGS_TABLE, item_as_dict, item_from_dict, make_plan
from mcu_ray.spec import SETTINGS, load_spec, parse_spec
from tests.helpers import REPO, tiny_digits_task


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
    changed = replace(spec, tasks=(replace(task, hparams={**task.hparams, "ga": replace(ga, params=replace(ga.params, lr=0.5))}),))
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


QUICKSTART = make_plan(load_spec(REPO / "sweeps" / "quickstart.yaml"))
# every module between the spec and the loops; spec.py builds the blocks, plan.py hashes them and is the
# boundary where they become plain data and back (item_as_dict / item_from_dict / options_from_dict)
KNOB_READERS = [REPO / "mcu_ray" / name for name in ("jobs.py", "train.py", "runner.py", "export.py", "estimate.py",
                                                     "evaluate.py", "search.py", "search_spec.py", "pathway_curve.py",
                                                     "rows.py", "sweep.py")]
KNOB_READERS += sorted((REPO / "mcu_ray" / "methods").glob("*.py")) + sorted((REPO / "mcu_ray" / "tasks").glob("*.py"))


def test_plan_items_hold_frozen_knob_blocks():
    """Method, Sophia and curriculum knobs are the frozen dataclasses the loops read, built by the plan:
    present exactly where the endpoint's optimiser / curriculum (a Bezier bend's objective) uses them."""
    for e in QUICKSTART.endpoints.values():
        assert type(e.hparams) is METHODS[e.method].Params
        assert type(e.optimizer_params) is (SophiaParams if e.optimizer == "so" else type(None))
        assert type(e.curriculum_params) is (CurriculumParams if e.curriculum == "cl" else type(None))
    for c in QUICKSTART.curves.values():
        assert type(c.hparams) is (METHODS[c.objective].Params if c.trained else type(None))
    blocks = [b for e in QUICKSTART.endpoints.values() for b in (e.hparams, e.optimizer_params, e.curriculum_params)]
    assert {"so", "cl"} <= {e.optimizer for e in QUICKSTART.endpoints.values()} | {
        e.curriculum for e in QUICKSTART.endpoints.values()}  # every kind of block is exercised
    assert all(b.__dataclass_params__.frozen for b in blocks if b is not None)


def test_endpoint_key_hashes_its_knobs_as_mappings():
    """An endpoint's key is the sha256 of the canonical JSON of what determines it (science version
    included), its knob blocks written as mappings ({} where unused), the data's location left out:
    computed here from meta.json's item."""
    for e in QUICKSTART.endpoints.values():
        payload = {k: v for k, v in json.loads(json.dumps(item_as_dict(e))).items() if k != "key"}
        if not payload["source"]:
            del payload["source"]  # absent from the keys of non-pathway endpoints
        payload["options"].pop("path", None)  # where data lives, not what it is: not keyed
        payload["reference"] = payload.pop("retrained")  # hashed under its first name: keys of old stores hold
        blob = json.dumps({"v": SCIENCE_VERSION, **payload}, sort_keys=True)
        assert e.key == "ep-" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_item_round_trips_through_meta_json():
    """What a job reads back from meta.json or a Ray config is the planned item, knob blocks frozen again."""
    groups = {"original": QUICKSTART.originals, "retrained": QUICKSTART.retrained,
              "endpoint": QUICKSTART.endpoints, "curve": QUICKSTART.curves}
    for kind, items in groups.items():
        for item in items.values():
            assert item_from_dict(kind, json.loads(json.dumps(item_as_dict(item)))) == item


# the asdict calls of KNOB_READERS, by (module, enclosing function): none turns a plan block into a mapping
ASDICT_ALLOWED = {("search.py", "name"): "a study's name hashes its task's options (key hashing)",
                  ("estimate.py", "estimate"): "the estimate's JSON output writes its Rates (not a plan block)",
                  ("search_spec.py", "as_file"): "the search section written back as a file (not a plan block)"}


def calls_by_function(tree: ast.AST, function: str = "") -> list[tuple[str, ast.Call]]:
    """(innermost enclosing function, call) for every call in ``tree``."""
    found = []
    for node in ast.iter_child_nodes(tree):
        inner = node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        if isinstance(node, ast.Call):
            found.append((function, node))
        found += calls_by_function(node, inner)
    return found


def test_loops_never_rebuild_knob_blocks():
    """Every module between the spec and the loops uses the plan's frozen blocks (task options, method /
    Sophia / curriculum knobs, a curve's fit, plan items): no ``X(**mapping)`` rebuild of one, and no
    ``asdict`` but the allowed ones: plan.py's key hashing and ``item_as_dict`` (meta.json, the Ray
    boundary) turn them into mappings, ``item_from_dict`` / ``options_from_dict`` back."""
    rebuilt = {"Params", "SophiaParams", "CurriculumParams", "Knobs", "Options", "CurveFitSpec", "Endpoint", "Curve",
               "Original", "Retrained"}
    found = []
    for path in KNOB_READERS:
        for function, node in calls_by_function(ast.parse(path.read_text())):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if (name in rebuilt and any(k.arg is None for k in node.keywords)) or (
                    name == "asdict" and (path.name, function) not in ASDICT_ALLOWED):
                found.append(f"{path.name}:{node.lineno} {name}")
    assert found == []
