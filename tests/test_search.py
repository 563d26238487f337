"""Hyper-parameter search: the search section refuses bad input, the chosen point follows its rule,
and (Ray) a study killed mid-way ends, after a rerun, with exactly its planned trials and the grid done."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml

from mcu_ray.errors import SpecError, spec_errors
from mcu_ray.search import apply_chosen, choose, dominates, studies
from mcu_ray.plan import SCIENCE_VERSION
from mcu_ray.spec import parse_spec, resolved_sweep_file
from mcu_ray.store import Store
from mcu_ray.tables import read_table
from tests.helpers import tiny_digits_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def searched(search: dict | None = None, **task) -> dict:
    """A digits sweep whose GA is searched (tiny: seconds per trial)."""
    block = tiny_digits_task(ratios=[5], methods=["ga"], hparams={"ga": {"steps": 4, "lr": 1e-3}}, **task)
    block["options"] = {**block["options"], "val_fraction": 0.1}
    return {"name": "searched", "settings": ["Rand"], "points": 3, "curves": ["linear"], "tasks": [block],
            "search": {"trials": 4, "concurrency": 1, "heartbeat_seconds": 1,
                       "space": {"digits": {"ga": {"lr": {"loguniform": [1e-4, 1e-1]}, "steps": {"int": [2, 8]}}}},
                       **(search or {})},
            "resources": {"max_concurrent_trials": 1, "trial_cpus": 0.25, "eval_cpus": 1,
                          "train": {"num_workers": 0}}}


def problems(raw: dict) -> list[SpecError]:
    with pytest.raises(SpecError) as caught:
        parse_spec(raw)
    return spec_errors(caught.value)


def with_search(**changes) -> dict:
    raw = searched()
    raw["search"] = {**raw["search"], **changes}
    return raw


def with_ga_space(space: dict) -> dict:
    return with_search(space={"digits": {"ga": space}})


def without_validation() -> dict:
    raw = searched()
    raw["tasks"][0]["options"]["val_fraction"] = 0.0
    return raw


BAD = {  # the search section's bad inputs -> (field named, words of what is allowed)
    "empty range": (with_ga_space({"lr": {"uniform": [0.01, 0.01]}}), "search.space.digits.ga.lr.uniform", "low < high"),
    "inverted range": (with_ga_space({"lr": {"loguniform": [0.1, 1e-4]}}), "search.space.digits.ga.lr.loguniform",
                       "low < high"),
    "log of zero": (with_ga_space({"lr": {"loguniform": [0, 0.1]}}), "search.space.digits.ga.lr.loguniform", "low > 0"),
    "unknown distribution": (with_ga_space({"lr": {"lognormal": [1e-4, 1e-1]}}), "search.space.digits.ga.lr.lognormal",
                             "unknown distribution"),
    "knob the method lacks": (with_ga_space({"alpha": {"uniform": [0, 1]}}), "search.space.digits.ga.alpha",
                              "ga has no knob"),
    "float range on an integer": (with_ga_space({"steps": {"uniform": [1, 9]}}), "search.space.digits.ga.steps.uniform",
                                  "integer"),
    "defaults outside the range": (with_ga_space({"lr": {"loguniform": [1e-2, 1e-1]}}), "search.space.digits.ga.lr",
                                   "first trial is the defaults"),
    "unknown metric": (with_search(objective="forget_qualty"), "search.objective", "unknown metric"),
    "metric of another task family": (with_search(objective="forget_quality"), "search.objective", "tofu metric"),
    "unknown direction": (with_search(objective=[{"acc_forget": "down"}, {"acc_test": "max"}]),
                          "search.objective[0].acc_forget", "max or min"),
    "zero trials": (with_search(trials=0), "search.trials", "from 1"),
    "unknown sampler": (with_search(sampler="cmaes"), "search.sampler", "allowed: auto, tpe, nsga2"),
    "not a database URL": (with_search(db="not a url"), "search.db", "SQLAlchemy database URL"),
    "ASHA with two objectives": (with_search(asha=True, objective=[{"acc_forget": "min"}, {"acc_test": "max"}]),
                                 "search.asha", "one objective"),
    "a task not in the sweep": (with_search(space={"tofu": {"ga": {"lr": {"uniform": [0, 1]}}}}), "search.space.tofu",
                                "not a task of this sweep"),
    "a method not in the task": (with_search(space={"digits": {"rl": {"lr": {"uniform": [0, 1]}}}}),
                                 "search.space.digits.rl", "not a method of task digits"),
    "no validation split": (without_validation(), "tasks[0].options.val_fraction", "val_fraction > 0"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_search_section_names_its_field(case):
    raw, field, words = BAD[case]
    found = problems(raw)
    assert any(e.path == field and words in e.allowed for e in found), [str(e) for e in found]


def test_from_search_needs_a_search_space():
    raw = searched()
    raw["search"]["space"] = {"digits": {"ga": {"lr": {"loguniform": [1e-4, 1e-1]}}}}
    raw["tasks"][0]["methods"] = ["ga", "rl"]
    raw["tasks"][0]["hparams"]["rl"] = {"from_search": True}
    found = problems(raw)
    assert [e.path for e in found] == ["tasks[0].hparams.rl.from_search"]


def test_bad_search_input_exits_2_before_any_work(tmp_path):
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(with_search(trials=0)))
    storage = tmp_path / "runs"
    for module in ("mcu_ray.search", "mcu_ray.sweep"):
        done = subprocess.run([sys.executable, "-m", module, str(spec_file), "--storage", str(storage)],
                              capture_output=True, text=True, cwd=REPO, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert "search.trials" in done.stderr and not storage.exists()


def test_an_unopenable_database_exits_2_naming_the_flag(tmp_path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(searched()))
    url = f"sqlite:///{tmp_path}/no/such/folder/studies.db"
    done = subprocess.run([sys.executable, "-m", "mcu_ray.search", str(spec_file), "--storage", str(tmp_path / "runs"),
                           "--search-db", url], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "--search-db" in done.stderr and "cannot open this database" in done.stderr


class Point:  # what choose() reads of an Optuna trial
    def __init__(self, number, values):
        self.number, self.values = number, values


def test_the_chosen_point_of_one_objective_is_the_best_value():
    trials = [Point(0, [0.3]), Point(1, [0.1]), Point(2, [0.1]), Point(3, [0.5])]
    assert choose(trials, [("gap_to_retrained", "min")])[0].number == 1  # ties go to the earlier trial
    assert choose(trials, [("acc_test", "max")])[0].number == 3


def test_the_chosen_point_of_two_objectives_is_the_front_point_nearest_the_ideal():
    # maximise both; front by hand: (0.9, 0.1), (0.6, 0.6), (0.1, 0.9); (0.5, 0.5) is dominated by (0.6, 0.6)
    trials = [Point(0, [0.9, 0.1]), Point(1, [0.5, 0.5]), Point(2, [0.6, 0.6]), Point(3, [0.1, 0.9])]
    chosen, rule = choose(trials, [("forget_quality", "max"), ("model_utility", "max")])
    # scaled over the front to [0, 1]: (1, 0), (0.625, 0.625), (0, 1); distances to (1, 1): 1, 0.53, 1
    assert chosen.number == 2 and "Pareto" in rule
    assert dominates([0.6, 0.6], [0.5, 0.5], [1, 1]) and not dominates([0.9, 0.1], [0.1, 0.9], [1, 1])
    assert dominates([0.1, 0.5], [0.2, 0.5], [-1, 1])  # lower is better on the first


def test_the_grid_takes_the_chosen_values_of_its_own_study_only():
    spec = parse_spec(searched())
    study = studies(spec)[0]
    summary = {"studies": [{"task": "digits", "method": "ga", "study": study.name, "chosen": {"lr": 0.02, "steps": 7}}]}
    chosen, notes = apply_chosen(spec, summary)
    params = chosen.tasks[0].hparams["ga"].params
    assert (params.lr, params.steps) == (0.02, 7)
    assert "chosen by study" in notes[0]
    stale = {"studies": [{**summary["studies"][0], "study": "searched.digits.ga.00000000"}]}  # another space's
    unchanged, notes = apply_chosen(spec, stale)
    assert unchanged.tasks[0].hparams == spec.tasks[0].hparams and "no chosen values yet" in notes[0]


def test_a_study_is_named_by_a_hash_of_what_decides_its_trials_as_the_sweep_file_writes_it():
    """The name hashes the task's options and the method's knobs as plain data (``--print-config``'s
    values): typed or not in memory, a study keeps its name, so a rerun finds its trials in the database."""
    spec = parse_spec(searched())
    study, written = studies(spec)[0], resolved_sweep_file(spec)["tasks"][0]
    ga = dict(written["hparams"]["ga"])
    so, cl = ga.pop("so"), ga.pop("cl")
    payload = {"v": SCIENCE_VERSION, "task": "digits", "options": written["options"], "precision": "fp32",
               "ratios": [5.0], "method": "ga", "hparams": {"params": ga, "so": so, "cl": cl},
               "knobs": {"lr": {"loguniform": [1e-4, 1e-1]}, "steps": {"int": [2, 8]}},
               "objectives": [["gap_to_retrained", "min"]], "sampler": "tpe", "seed": 0, "endpoint_seed": 0}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:8]
    assert study.name == f"searched.digits.ga.{digest}"


def finished(db: str, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=db)
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]


@pytest.mark.ray
def test_a_search_killed_mid_study_ends_with_exactly_its_trials_and_the_grid(tmp_path):
    spec_file = tmp_path / "s.yaml"
    spec_file.write_text(yaml.safe_dump(searched()))
    storage = tmp_path / "runs"
    db = f"sqlite:///{storage}/searched/search/studies.db"
    name = studies(parse_spec(searched()))[0].name
    cmd = [sys.executable, "-m", "mcu_ray.sweep", str(spec_file), "--storage", str(storage), "--no-report"]
    env = {**os.environ, "PYTHONPATH": REPO}
    driver = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait for the first finished trial, then kill the driver and its Ray
        if os.path.exists(f"{storage}/searched/search/studies.db"):
            try:
                if finished(db, name):
                    break
            except KeyError:  # the study is not created yet
                pass
        assert driver.poll() is None, "the driver ended before it was killed"
        time.sleep(0.5)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = len(finished(db, name))
    assert 1 <= before < 4
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trials = finished(db, name)
    assert len(trials) == 4 and len({t.number for t in trials}) == 4
    assert all(t.user_attrs["ratios_done"] == 1 and t.values is not None for t in trials)
    assert sum(t.params == {"lr": 1e-3, "steps": 4} for t in trials) == 1  # the defaults, once, killed or not
    rows = read_table(Store(str(storage)), "searched", "results").to_pylist()
    assert {r["status"] for r in rows} == {"ok"} and len({r["cell_id"] for r in rows}) == 1
    chosen = yaml.safe_load((storage / "searched" / "search" / "chosen.yaml").read_text())
    best = min(trials, key=lambda t: t.values[0])
    assert chosen["digits"]["hparams"]["ga"] == best.params


def search_alone(raw: dict, tmp_path) -> object:
    """``python -m mcu_ray.search`` on the sweep ``raw``; its storage folder."""
    spec_file, storage = tmp_path / "s.yaml", tmp_path / "runs"
    spec_file.write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "mcu_ray.search", str(spec_file), "--storage", str(storage)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return storage


@pytest.mark.ray
def test_a_two_objective_search_stores_a_non_dominated_front(tmp_path):
    raw = searched({"objective": [{"acc_forget": "min"}, {"acc_test": "max"}], "trials": 5, "concurrency": 2})
    storage = search_alone(raw, tmp_path)
    study = optuna.load_study(study_name=studies(parse_spec(raw))[0].name,
                              storage=f"sqlite:///{storage}/searched/search/studies.db")
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 5
    front = study.best_trials  # Optuna's stored front
    for t in front:  # acc_forget lower is better, acc_test higher: nothing complete beats a front point on both
        assert not any(o.values[0] <= t.values[0] and o.values[1] >= t.values[1] and o.values != t.values
                       for o in complete)
    for t in complete:  # and every point off the front is beaten by one on it
        if t.number not in {f.number for f in front}:
            assert any(f.values[0] <= t.values[0] and f.values[1] >= t.values[1] for f in front)
    summary = yaml.safe_load((storage / "searched" / "search" / "summary.json").read_text())
    assert summary["studies"][0]["chosen_trial"] in {t.number for t in front}
    assert "Pareto" in summary["studies"][0]["rule"]


@pytest.mark.ray
def test_asha_stops_trials_after_their_first_ratio_and_they_count_as_finished(tmp_path):
    raw = searched({"asha": {"grace_period": 1, "reduction_factor": 2}, "trials": 5})
    raw["tasks"][0]["ratios"] = [5, 10]
    storage = search_alone(raw, tmp_path)
    trials = finished(f"sqlite:///{storage}/searched/search/studies.db", studies(parse_spec(raw))[0].name)
    assert len(trials) == 5
    for t in trials:  # a pruned trial scored the first ratio only; a complete one both
        pruned = t.state == optuna.trial.TrialState.PRUNED
        assert t.user_attrs["ratios_done"] == (1 if pruned else 2)
        assert list(t.user_attrs["endpoints"]) == (["5.0"] if pruned else ["5.0", "10.0"])
