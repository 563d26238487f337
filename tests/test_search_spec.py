"""The sweep file's ``search:`` section parsed: its defaults, directions taken from the metric registry,
the sampler chosen by the number of objectives, distributions as Optuna's, the knobs a trial draws put
into a method's resolved values, and the section written back as it was read. (Bad input:
tests/test_search.py.)"""
from dataclasses import replace

import optuna.distributions as od
import pytest

from mcu_ray.search_spec import (
    GAP, AshaSpec, Distribution, knob_fields, parse_search, resolved_value, searched_variant, with_values,
)
from mcu_ray.methods import resolve_hparams
from mcu_ray.spec import parse_spec
from mcu_ray.tasks import TASKS
from tests.helpers import tiny_digits_task


def sweep(search: dict) -> dict:
    block = tiny_digits_task(methods=["ga"], hparams={"ga": {"steps": 4, "lr": 1e-3}})
    block["options"] = {**block["options"], "val_fraction": 0.1}
    return {"name": "s", "settings": ["Rand"], "tasks": [block],
            "search": {"space": {"digits": {"ga": {"lr": {"loguniform": [1e-4, 1e-1]}}}}, **search}}


def test_defaults_one_gap_objective_and_tpe():
    search = parse_spec(sweep({})).search
    assert (search.trials, search.concurrency, search.objectives, search.sampler_kind, search.asha, search.db) == (
        12, 1, ((GAP, "min"),), "tpe", None, "")
    assert search.space == {"digits": {"ga": {"lr": Distribution("loguniform", (1e-4, 1e-1))}}}


def test_a_metric_takes_its_registry_direction_and_two_objectives_nsga2():
    search = parse_spec(sweep({"objective": ["acc_forget", {"acc_test": "max"}]})).search
    assert search.objectives == (("acc_forget", "min"), ("acc_test", "max"))  # acc_forget: lower is better
    assert search.sampler_kind == "nsga2"
    assert parse_spec(sweep({"asha": True})).search.asha == AshaSpec(grace_period=1, reduction_factor=2)


def test_the_section_is_written_back_as_it_reads():
    spec = parse_spec(sweep({"trials": 3, "objective": {"acc_forget": "min"}, "seed": 7}))
    written = spec.search.as_file()
    assert written["objective"] == [{"acc_forget": "min"}] and written["trials"] == 3
    assert parse_search(written, list(spec.tasks)) == spec.search


def test_distributions_are_optunas_and_hold_their_bounds():
    assert Distribution("loguniform", (1e-4, 1e-1)).optuna() == od.FloatDistribution(1e-4, 1e-1, log=True)
    assert Distribution("logint", (2, 64)).optuna() == od.IntDistribution(2, 64, log=True)
    assert Distribution("choice", ("a", "b")).optuna() == od.CategoricalDistribution(["a", "b"])
    uniform = Distribution("uniform", (0.0, 1.0))
    assert uniform.contains(0.0) and uniform.contains(1.0) and not uniform.contains(1.01)
    assert not Distribution("choice", (1, 2)).contains(3)


def test_drawn_knobs_go_into_the_resolved_values_and_pick_the_variant():
    knobs = resolve_hparams("ga", TASKS["digits"], {"lr": 1e-3, "steps": 4, "so": {"rho": 0.04}}, "h")
    drawn = with_values(knobs, {"lr": 0.5, "so.rho": 0.1})
    assert drawn == replace(knobs, params=replace(knobs.params, lr=0.5), so=replace(knobs.so, rho=0.1))
    assert knobs.params.lr == 1e-3  # the resolved values stay as they were
    assert resolved_value(drawn, "so.rho") == 0.1 and resolved_value(drawn, "steps") == 4
    assert searched_variant({"lr": 1}) == ("fo", "none")
    assert searched_variant({"so.rho": 1, "cl.lam": 2}) == ("so", "cl")


def test_a_method_may_search_its_own_sophias_and_the_curriculums_knobs():
    fields = knob_fields("npo")
    assert {"beta", "lr", "so.rho", "so.beta2", "cl.lam"} <= set(fields)
    assert fields["so.rho"].default == pytest.approx(0.04)
