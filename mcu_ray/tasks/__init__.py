"""Task registry: one module per task, one line here."""
from mcu_ray.tasks import cifar10, ddi, digits, nlvr2, tofu

TASKS = {
    "digits": digits.TASK,
    "tofu": tofu.TASK,
    "cifar10": cifar10.TASK,
    "ddi": ddi.TASK,
    "nlvr2": nlvr2.TASK,
}
