"""The report's hyper-parameter search section, on real Optuna studies in a SQLite file.

Two studies are written with optuna directly, trial by trial with known values: one objective
(GA on digits, six trials, one of them pruned with a value better than any complete one, so a
best-so-far that counted it would show) and two objectives (NPO, points placed so that which
are dominated is known by hand, one pruned trial without values). summary.json is written as
the search driver writes it, the chosen endpoints' meta.json through the Store. Expected numbers
are worked out by hand here, never read back from the code under test. No Ray.
"""
from __future__ import annotations

import itertools
import json

import matplotlib.image as mpimg
import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from mcu_ray.report import EmptySweepError, build_report
from mcu_ray.report.figures import save
from mcu_ray.report.search import (
    best_so_far, history_figure_of, importance_table, load_summary, open_study, pareto_figure_of, pareto_front,
    search_report, trial_table, validation_table,
)
from mcu_ray.store import Store

SWEEP = "search_digits"
SO = {"task": "digits", "method": "ga", "study": "search_digits.digits.ga.3f2a9c1b"}
MO = {"task": "digits", "method": "npo", "study": "search_digits.digits.npo.77aa01c2"}
SO_SPACE = {"lr": {"loguniform": [1e-4, 0.1]}, "epochs": {"int": [1, 10]}, "batch_size": {"choice": [16]}}
SO_DISTRIBUTIONS = {"lr": FloatDistribution(1e-4, 0.1, log=True), "epochs": IntDistribution(1, 10),
                    "batch_size": CategoricalDistribution([16])}
# trial number -> (state, lr, epochs, gap_to_retrained); trial 0 runs the defaults, trial 4 is chosen.
SO_TRIALS = {0: ("COMPLETE", 0.01, 5, 0.052), 1: ("COMPLETE", 0.003, 2, 0.070), 2: ("COMPLETE", 0.03, 8, 0.045),
             3: ("PRUNED", 0.09, 1, 0.010), 4: ("COMPLETE", 0.0031, 7, 0.031), 5: ("COMPLETE", 0.001, 3, 0.060)}
RUNNING_MIN = [0.052, 0.052, 0.045, 0.031, 0.031]  # over the complete trials 0, 1, 2, 4, 5 (the pruned 0.010 not)
# Both objectives (forget_quality, model_utility) maximised. Trial -> (state, values).
MO_TRIALS = {0: ("COMPLETE", (0.1, 0.9)),     # A
             1: ("COMPLETE", (0.5, 0.5)),     # B
             2: ("COMPLETE", (0.9, 0.1)),     # C
             3: ("COMPLETE", (0.4, 0.4)),     # D: B beats it on both
             4: ("COMPLETE", (0.5, 0.5)),     # E: ties B, so neither dominates the other
             5: ("COMPLETE", (0.05, 0.85)),   # F: A beats it on both
             6: ("COMPLETE", (0.9, 0.05)),    # G: C equals it on the first, beats it on the second
             7: ("COMPLETE", (0.3, 0.8)),     # H: A has less FQ, B less MU, nothing beats it on both
             8: ("PRUNED", None)}
MO_FRONT = {0, 1, 2, 4, 7}
ENDPOINTS = {"2.0": "ep-00000000000000a2", "10.0": "ep-00000000000000aa"}
VALIDATION = {"2.0": {"acc_forget": 0.50, "acc_test": 0.91}, "10.0": {"acc_forget": 0.62, "acc_test": 0.90}}
TEST_SIDE = {"2.0": {"acc_forget": 0.47, "acc_test": 0.89, "loss_retain": 0.12}}  # the 10 % endpoint is not stored


def _write_studies(db: str) -> None:
    storage = optuna.storages.RDBStorage(db)
    so = optuna.create_study(study_name=SO["study"], storage=storage, direction="minimize")
    for number, (state, lr, epochs, value) in SO_TRIALS.items():
        attrs = {"ratios_done": 2 if state == "COMPLETE" else 1,
                 "validation": VALIDATION if number == 4 else {}, "endpoints": ENDPOINTS if number == 4 else {}}
        so.add_trial(optuna.trial.create_trial(state=TrialState[state], value=value, user_attrs=attrs,
                                               params={"lr": lr, "epochs": epochs, "batch_size": 16},
                                               distributions=SO_DISTRIBUTIONS))
    mo = optuna.create_study(study_name=MO["study"], storage=storage, directions=["maximize", "maximize"])
    for number, (state, values) in MO_TRIALS.items():
        mo.add_trial(optuna.trial.create_trial(state=TrialState[state], values=values,
                                               params={"beta": 0.05 + 0.1 * number},
                                               distributions={"beta": FloatDistribution(0.01, 1.0)}))


def _summary(db: str) -> dict:
    return {"sweep": SWEEP, "db": db, "studies": [
        {**SO, "space": SO_SPACE, "objectives": [["gap_to_retrained", "min"]], "trials": 6, "ratios": [2.0, 10.0],
         "default": {"lr": 0.01, "epochs": 5, "batch_size": 16}, "default_trial": 0,
         "chosen": {"lr": 0.0031, "epochs": 7, "batch_size": 16}, "chosen_trial": 4,
         "chosen_values": [0.031], "default_values": [0.052], "chosen_endpoints": ENDPOINTS,
         "rule": "best objective"},
        {**MO, "space": {"beta": {"uniform": [0.01, 1.0]}},
         "objectives": [["forget_quality", "max"], ["model_utility", "max"]], "trials": 9, "ratios": [2.0],
         "default": {"beta": 0.05}, "default_trial": 0, "chosen": {"beta": 0.15}, "chosen_trial": 1,
         "chosen_values": [0.5, 0.5], "default_values": [0.1, 0.9], "chosen_endpoints": {},
         "rule": "closest to the ideal point of the normalised Pareto front"}]}


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> str:
    """A store root whose sweep was searched: summary.json, the studies' SQLite file, one chosen endpoint."""
    root = tmp_path_factory.mktemp("store")
    store = Store(str(root))
    db = f"sqlite:///{root / SWEEP / 'search' / 'studies.db'}"
    (root / SWEEP / "search").mkdir(parents=True)
    _write_studies(db)
    store.write_bytes(json.dumps(_summary(db)).encode(), SWEEP, "search", "summary.json")
    store.save_artifact(ENDPOINTS["2.0"], {"kind": "endpoint", "metrics": TEST_SIDE["2.0"]})
    return str(root)


@pytest.fixture(scope="module")
def studies(searched):
    summary = load_summary(searched, SWEEP)
    return {e["method"]: (e, open_study(summary["db"], e["study"])) for e in summary["studies"]}


def test_best_so_far_is_the_running_min_or_max():
    assert best_so_far([3.0, 1.0, 2.0, 0.5], "min").tolist() == [3.0, 1.0, 1.0, 0.5]
    assert best_so_far([3.0, 1.0, 4.0, 0.5], "max").tolist() == [3.0, 3.0, 4.0, 4.0]


def test_pareto_front_keeps_ties_and_follows_each_direction():
    values = np.array([[0.1, 0.9], [0.5, 0.5], [0.5, 0.5], [0.4, 0.6], [0.4, 0.4]])
    assert pareto_front(values, ["max", "max"]).tolist() == [True, True, True, True, False]
    # minimising the second objective instead: (0.5, 0.5) beats (0.1, 0.9) and (0.4, 0.6) on both, and nothing
    # beats (0.4, 0.4): it has the lowest second value
    assert pareto_front(values, ["max", "min"]).tolist() == [False, True, True, False, True]


def test_trial_table_has_every_complete_and_pruned_trial(studies):
    entry, study = studies["ga"]
    table = trial_table(study, entry["objectives"], entry["space"])
    assert table["trial"].tolist() == list(SO_TRIALS)
    assert table["state"].tolist() == [s for s, *_ in SO_TRIALS.values()]
    assert table["gap_to_retrained"].tolist() == [v for *_, v in SO_TRIALS.values()]
    assert table["lr"].tolist() == [lr for _, lr, _, _ in SO_TRIALS.values()]
    assert table["ratios done"].tolist() == [2, 2, 2, 1, 2, 2]


def test_history_draws_the_running_min_of_complete_trials_and_the_pruned_apart(studies):
    entry, study = studies["ga"]
    trials = trial_table(study, entry["objectives"], entry["space"])
    fig = history_figure_of("digits", "ga", trials, entry["objectives"], {"default": 0, "chosen": 4})
    (ax,) = fig.axes
    best = next(line for line in ax.get_lines() if line.get_label() == "best so far")
    assert best.get_xdata().tolist() == [0, 1, 2, 4, 5]
    assert np.allclose(best.get_ydata(), RUNNING_MIN)
    shown = {c.get_label(): c.get_offsets().tolist() for c in ax.collections}
    assert shown["pruned (value reached)"] == [[3, 0.010]]
    assert shown["complete trial"] == [[n, v] for n, (s, *_, v) in SO_TRIALS.items() if s == "COMPLETE"]
    assert shown["default (trial 0)"] == [[0, 0.052]] and shown["chosen (trial 4)"] == [[4, 0.031]]


def test_pareto_figure_highlights_the_hand_known_front(studies):
    entry, study = studies["npo"]
    trials = trial_table(study, entry["objectives"], entry["space"])
    complete = trials[trials["state"] == "COMPLETE"]
    front = pareto_front(complete[["forget_quality", "model_utility"]].to_numpy(), ["max", "max"])
    assert set(complete["trial"][front]) == MO_FRONT
    fig = pareto_figure_of("digits", "npo", trials, entry["objectives"], {"default": 0, "chosen": 1})
    shown = {c.get_label(): c.get_offsets().tolist() for c in fig.axes[0].collections}
    assert sorted(map(tuple, shown["Pareto front"])) == sorted(MO_TRIALS[n][1] for n in MO_FRONT)
    assert sorted(map(tuple, shown["dominated"])) == sorted(MO_TRIALS[n][1] for n in (3, 5, 6))
    assert shown["chosen (trial 1)"] == [[0.5, 0.5]] and shown["default (trial 0)"] == [[0.1, 0.9]]


def test_importance_of_the_varied_parameters_sums_to_one(studies):
    entry, study = studies["ga"]
    table, notes = importance_table(study, entry["objectives"])
    assert set(table["parameter"]) == {"lr", "epochs"}  # batch_size never changed
    assert table["gap to retrained ↓"].sum() == pytest.approx(1.0)
    assert notes == ["the same in every complete trial, so not in the table: batch_size"]


def test_importance_is_of_each_objective_in_turn():
    """Objective 1 is parameter a, objective 2 parameter b, over a 4 × 4 grid: fANOVA must give each
    objective's variance to its own parameter (a target bound to the wrong objective would swap them)."""
    study = optuna.create_study(directions=["minimize", "maximize"])
    levels = [0.0, 1.0, 2.0, 3.0]
    for a, b in itertools.product(levels, levels):
        study.add_trial(optuna.trial.create_trial(values=[a, b], params={"a": a, "b": b},
                                                  distributions={"a": FloatDistribution(0, 3),
                                                                 "b": FloatDistribution(0, 3)}))
    table, notes = importance_table(study, [("first", "min"), ("second", "max")])
    by_param = table.set_index("parameter")
    assert by_param.loc["a", "first ↓"] > 0.9 and by_param.loc["b", "second ↑"] > 0.9
    assert by_param.sum().tolist() == pytest.approx([1.0, 1.0]) and notes == []


def test_importance_says_why_it_is_absent():
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=1.0, params={"a": 1.0}, distributions={"a": FloatDistribution(0, 3)}))
    table, notes = importance_table(study, [("gap", "min")])
    assert table.empty and notes == ["gap ↓: not computed, 1 complete trial(s) with a value (fANOVA needs 2)",
                                     "the same in every complete trial, so not in the table: a"]
    study.add_trial(optuna.trial.create_trial(value=2.0, params={"a": 1.0}, distributions={"a": FloatDistribution(0, 3)}))
    table, notes = importance_table(study, [("gap", "min")])
    assert table.empty and notes[0] == "gap ↓: not computed, no parameter took two values in the complete trials"


def test_validation_beside_test_side_per_ratio(searched, studies):
    entry, _ = studies["ga"]
    table, notes = validation_table(Store(searched), entry, VALIDATION)
    found = {(r, m): (v, t) for r, m, v, t in table.itertuples(index=False)}
    nan = float("nan")
    expected = {(2.0, "acc_forget"): (0.50, 0.47), (2.0, "acc_test"): (0.91, 0.89), (2.0, "loss_retain"): (nan, 0.12),
                (10.0, "acc_forget"): (0.62, nan), (10.0, "acc_test"): (0.90, nan)}
    assert found.keys() == expected.keys()
    for key, values in expected.items():
        assert np.allclose(found[key], values, equal_nan=True), key
    assert notes == [f"endpoint {ENDPOINTS['10.0']} (10 %) is not in the store"]


def test_page_has_a_search_section_with_its_figures_and_tables(searched, studies, tmp_path):
    """A searched sweep without results yet: the page is the search alone; --csv writes its tables. Each
    figure is its study's (its trials, the summary's default and chosen trials), drawn again here alone."""
    index = build_report(searched, SWEEP, str(tmp_path / "report"), workers=1, csv_dir=str(tmp_path / "csv"))
    html = open(index, encoding="utf-8").read()
    assert '<section id="search"><h2>Hyper-parameter search</h2>' in html and 'href="#search"' in html
    for name in ("search_digits_ga", "search_digits_npo"):
        assert f'<h3 id="{name}">' in html
    figures = {"search_digits_ga_history": history_figure_of, "search_digits_npo_history": history_figure_of,
               "search_digits_npo_pareto": pareto_figure_of}
    for figure, draw in figures.items():
        assert f'src="{figure}.png"' in html
        entry, study = studies[figure.split("_")[2]]
        objectives = [tuple(o) for o in entry["objectives"]]
        marks = {"default": entry["default_trial"], "chosen": entry["chosen_trial"]}
        save(draw("digits", entry["method"], trial_table(study, objectives, entry["space"]), objectives, marks),
             str(tmp_path / f"{figure}.png"))
        assert np.array_equal(mpimg.imread(tmp_path / "report" / f"{figure}.png"),
                              mpimg.imread(tmp_path / f"{figure}.png")), figure
        assert (tmp_path / "report" / f"{figure}.pdf").read_bytes()[:5] == b"%PDF-"
    assert not (tmp_path / "report" / "search_digits_ga_pareto.png").exists()  # one objective: no front
    assert "Parameter importance (fANOVA)" in html and "closest to the ideal point" in html
    csv = {p.stem for p in (tmp_path / "csv").glob("search_*.csv")}
    assert csv == {f"search_digits_{m}_{t}" for m in ("ga", "npo") for t in ("chosen", "importance", "validation",
                                                                            "trials")} - {"search_digits_npo_validation"}


def test_a_moved_store_finds_its_database_beside_the_summary(searched, tmp_path):
    """summary.json names the database by a path of the machine the search ran on; the copy's file beside it is read."""
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(searched, moved)
    summary = json.loads((moved / SWEEP / "search" / "summary.json").read_text())
    Store(str(moved)).write_bytes(json.dumps({**summary, "db": "sqlite:////cluster/runs/search_digits/search/studies.db"})
                                  .encode(), SWEEP, "search", "summary.json")
    sections, drawings = search_report(str(moved), SWEEP, str(tmp_path / "report"))
    assert [s.name for s in sections] == ["search_digits_ga", "search_digits_npo"] and len(drawings) == 3
    assert str(moved) in sections[0].facts["study"]


def test_no_summary_means_no_section_and_a_missing_study_is_said(tmp_path):
    assert search_report(str(tmp_path), SWEEP, str(tmp_path / "report")) == ([], [])
    with pytest.raises(EmptySweepError):
        build_report(str(tmp_path), SWEEP, str(tmp_path / "report"))
    store, db = Store(str(tmp_path)), f"sqlite:///{tmp_path / 'nowhere.db'}"
    store.write_bytes(json.dumps(_summary(db)).encode(), SWEEP, "search", "summary.json")
    sections, drawings = search_report(str(tmp_path), SWEEP, str(tmp_path / "report"))
    assert drawings == [] and not (tmp_path / "nowhere.db").exists()  # nothing created
    assert sections[0].importance_notes == [f"study database {tmp_path / 'nowhere.db'} not found, nor beside "
                                            f"summary.json"]
    assert sections[0].chosen.set_index("name").loc["lr", "chosen"] == 0.0031  # the summary alone still tells
