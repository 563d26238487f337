"""Every registered task implements the Task protocol (and classifiers expose their logits)."""
import pytest

from mcu_ray.tasks import TASKS
from mcu_ray.tasks.base import ClassifierTask, Task


@pytest.mark.parametrize("name", sorted(TASKS))
def test_registered_tasks_implement_the_protocol(name):
    task = TASKS[name]
    assert isinstance(task, Task)
    assert task.name == name
    assert isinstance(task, ClassifierTask) == (task.family == "classification")
    assert {task.retain_loss, task.forget_loss, *task.gap_metrics, *task.figure_metrics} <= set(
        task.metric_directions)
