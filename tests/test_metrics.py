"""The metric registry: every metric a registered task emits is declared once, completely, and
the task families, directions and tolerance families it declares agree with the tasks and the spec."""
import dataclasses
import math

import pytest
import torch

from mcu_ray import metrics
from mcu_ray.placement import Placement
from mcu_ray.spec import Tolerances
from mcu_ray.tasks import TASKS
from mcu_ray.tasks.digits import TASK as DIGITS


def test_every_emitted_metric_has_a_complete_entry():
    for task in TASKS.values():
        for name in task.metric_directions:
            entry = metrics.METRICS[name]
            entry.check()
            assert entry.name == name
            assert entry.tasks in (task.family, "both"), (task.name, name)
            assert task.metric_directions[name] == entry.sign == {"max": 1, "min": -1}[entry.direction]
            assert all(getattr(entry, field).strip() for field in ("label", "unit", "definition", "source"))
            low, high = entry.bounds
            assert low < high and not math.isnan(low) and not math.isnan(high)
    emitted_by = {name: {t.family for t in TASKS.values() if name in t.metric_directions} for name in metrics.METRICS}
    for name, entry in metrics.METRICS.items():
        families = {"classification", "tofu"} if entry.tasks == "both" else {entry.tasks}
        assert emitted_by[name] == families, name  # no entry that no task of its families writes


def test_families_are_the_spec_tolerances():
    assert set(metrics.FAMILIES) == {f.name for f in dataclasses.fields(Tolerances)}


def test_an_incomplete_entry_is_refused_naming_its_field():
    entry = metrics.METRICS["mia_loss"]
    for change, field in ((dict(direction="up"), "direction"), (dict(tasks="vision"), "tasks"),
                          (dict(bounds=(1.0, 0.0)), "bounds"), (dict(source=" "), "source"),
                          (dict(family="privacy"), "family")):
        with pytest.raises(ValueError, match=f"'mia_loss': {field}"):
            dataclasses.replace(entry, **change).check()
    with pytest.raises(KeyError, match="no entry in mcu_ray.metrics"):
        metrics.direction("no_such_metric")


def test_evaluated_values_lie_in_their_declared_range():
    torch.set_num_threads(1)
    options = DIGITS.Options(width=4)
    data, placement = DIGITS.load(options, 10), Placement("cpu")
    model = DIGITS.new_model(options, seed=0)
    values = DIGITS.evaluate(model, options, data, DIGITS.eval_context(options, data, None, placement), placement)
    assert set(values) == set(DIGITS.metric_directions)
    for name, value in values.items():
        low, high = metrics.METRICS[name].bounds
        assert low <= value <= high, (name, value)
