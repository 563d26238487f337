"""The task registry (``mcu_ray.tasks``): one entry per task under its own name, its tuned defaults only
for methods that apply to its family and only knobs those methods have (the metrics each task emits are
checked against the metric registry in tests/test_metrics.py)."""
import pytest

from mcu_ray.methods import METHODS
from mcu_ray.tasks import TASKS


def test_the_registry_holds_every_task_under_its_name():
    assert sorted(TASKS) == ["cifar10", "ddi", "digits", "nlvr2", "tofu"]
    assert {name: task.name for name, task in TASKS.items()} == {name: name for name in TASKS}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_tuned_defaults_name_methods_of_the_tasks_family(name):
    task = TASKS[name]
    for method, knobs in task.default_hparams.items():
        assert task.family in METHODS[method].families, (name, method)
        fields = {f for f in METHODS[method].Params.__dataclass_fields__}
        assert set(knobs) - {"so", "cl"} <= fields, (name, method)

