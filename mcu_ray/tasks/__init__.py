"""Task registry: one module per task, one line here."""
from mcu_ray.tasks import digits

TASKS = {
    "digits": digits.TASK,
}
