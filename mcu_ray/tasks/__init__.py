"""Task registry: one module per task, one line here."""
from mcu_ray.tasks import digits, tofu

TASKS = {
    "digits": digits.TASK,
    "tofu": tofu.TASK,
}
