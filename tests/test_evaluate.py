"""Evaluating stored weights is the task's own evaluation of a model holding them: ``evaluate_state``
equals ``Task.evaluate``, ``validate_state`` equals ``Task.validate``, curve points equal the model
loaded at each t (digits, width 4: seconds on the CPU)."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from mcu_ray.curves import load_point
from mcu_ray.evaluate import evaluate_curve_points, evaluate_state, task_data, validate_state
from mcu_ray.placement import Placement
from mcu_ray.store import Store
from mcu_ray.tasks import TASKS
from tests.helpers import random_control_points

CPU = Placement("cpu")
DIGITS = TASKS["digits"]
OPTIONS = DIGITS.Options(width=4)
RATIO = 5.0


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store holding a 'retrained' model (what evaluation compares with), and the weights of
    another model, seeded differently from the scratch model ``evaluate_state`` builds (seed 0)."""
    torch.set_num_threads(1)
    store = Store(str(tmp_path_factory.mktemp("evaluate")))
    store.save_artifact("retrained-x", {"kind": "retrained"}, weights=DIGITS.new_model(OPTIONS, seed=1).state_dict())
    return store, DIGITS.new_model(OPTIONS, seed=3).state_dict()


def by_the_task(method: str, state: dict, store: Store):
    """``Task.evaluate`` / ``Task.validate`` of a model built here and loaded with ``state``."""
    data = DIGITS.load(OPTIONS, RATIO)
    model = DIGITS.new_model(OPTIONS, seed=5)
    model.load_state_dict(state)
    context = DIGITS.eval_context(OPTIONS, data, store.load_weights("retrained-x"), CPU)
    return getattr(DIGITS, method)(model, OPTIONS, data, context, CPU)


def test_evaluate_state_is_the_tasks_evaluation_of_those_weights(stored):
    store, state = stored
    evaluation = evaluate_state("digits", OPTIONS, RATIO, state, (store.uri, "retrained-x"), CPU)
    expected = by_the_task("evaluate", state, store)
    assert dict(evaluation) == pytest.approx(dict(expected), rel=1e-6)
    assert evaluation.examples.keys() == expected.examples.keys()
    for split, columns in expected.examples.items():
        for name, values in columns.items():
            np.testing.assert_allclose(evaluation.examples[split][name], values, rtol=1e-6)
    # the weights matter: the scratch model's own (seed 0) evaluate to other numbers
    assert dict(evaluation) != pytest.approx(dict(by_the_task("evaluate", DIGITS.new_model(OPTIONS, seed=0)
                                                              .state_dict(), store)), rel=1e-6)


def test_validate_state_is_the_tasks_validation_of_those_weights(stored):
    store, state = stored
    validation = validate_state("digits", OPTIONS, RATIO, state, (store.uri, "retrained-x"), CPU)
    assert validation == pytest.approx(dict(by_the_task("validate", state, store)), rel=1e-6)
    assert validation["acc_test"] != pytest.approx(
        evaluate_state("digits", OPTIONS, RATIO, state, (store.uri, "retrained-x"), CPU)["acc_test"])  # other rows


def test_curve_points_are_the_model_loaded_at_each_t(stored):
    store, _ = stored
    control_points = random_control_points(DIGITS, OPTIONS)
    ts = [0.0, 0.25, 0.5]
    rows = evaluate_curve_points("digits", OPTIONS, RATIO, control_points, ts, (store.uri, "retrained-x"), CPU)
    assert [row["t"] for row in rows] == ts
    for t, row in zip(ts, rows):
        model = DIGITS.new_model(OPTIONS, seed=0)
        with torch.no_grad():
            load_point(model, control_points, t)
        expected = by_the_task("evaluate", model.state_dict(), store)
        assert {k: v for k, v in row.items() if k != "t"} == pytest.approx(dict(expected), rel=1e-5, abs=1e-6)


def test_task_data_is_loaded_once_per_options_whatever_their_order():
    first = task_data("digits", OPTIONS, RATIO)
    assert task_data("digits", DIGITS.Options(width=4), RATIO) is first  # equal options, built apart
    assert task_data("digits", OPTIONS, 10.0) is not first
