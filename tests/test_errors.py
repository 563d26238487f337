"""The validation errors and the scalar and block checks every part of the sweep file goes through."""
from dataclasses import dataclass

import pytest

from mcu_ray.errors import (SpecError, SpecErrors, build_dataclass, check_value, did_you_mean, join_path,
                            spec_errors)


def test_a_spec_error_names_the_field_the_value_and_what_is_allowed():
    error = SpecError("tasks[0].ratios[1]", 150, "a forget ratio is a percentage strictly between 0 and 100")
    assert str(error) == ("tasks[0].ratios[1]: got 150; a forget ratio is a percentage strictly between 0 and 100")
    assert spec_errors(error) == [error]


@pytest.mark.parametrize("value, tp, expected", [(3, int, 3), (2, float, 2.0), (True, bool, True), ("x", str, "x")])
def test_check_value_returns_good_scalars_coerced(value, tp, expected):
    got = check_value(value, tp, "f")
    assert got == expected and type(got) is tp


@pytest.mark.parametrize("value, tp, words", [
    (True, int, "an integer"), (1.5, int, "an integer"), ("1", float, "a number"), (float("nan"), float, "finite"),
    (float("inf"), float, "finite"), (10 ** 400, float, "finite"), ("", str, "non-empty"), (1, bool, "true or false")])
def test_check_value_refuses_what_its_type_cannot_mean(value, tp, words):
    with pytest.raises(SpecError) as caught:
        check_value(value, tp, "block.field")
    assert caught.value.path == "block.field" and words in caught.value.allowed


def test_a_size_beyond_its_bound_is_refused_by_the_fields_name():
    assert check_value(1001, int, "points") == 1001
    with pytest.raises(SpecError, match="at most 1,001"):
        check_value(1002, int, "points")
    with pytest.raises(SpecError, match="at most 100,000 epochs"):
        check_value(100_001, int, "tasks[0].options.epochs")


@dataclass(frozen=True)
class Knobs:
    lr: float = 0.1
    steps: int = 1


def test_build_dataclass_reports_every_problem_of_a_block_at_once():
    assert build_dataclass(Knobs, {"lr": 1}, "h") == Knobs(lr=1.0)
    with pytest.raises(SpecErrors) as caught:
        build_dataclass(Knobs, {"lr": "fast", "stpes": 3}, "h")
    assert sorted(e.path for e in spec_errors(caught.value)) == ["h.lr", "h.stpes"]
    unknown = next(e for e in spec_errors(caught.value) if e.path == "h.stpes")
    assert "did you mean 'steps'" in unknown.allowed


def test_paths_and_suggestions():
    assert join_path("tasks", 0) == "tasks[0]" and join_path("tasks[0]", "ratios") == "tasks[0].ratios"
    assert join_path("", "name") == "name"
    assert did_you_mean("digts", ["digits", "tofu"]) == " (did you mean 'digits'?)"
    assert did_you_mean("zzz", ["digits", "tofu"]) == ""
