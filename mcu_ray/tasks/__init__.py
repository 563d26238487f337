"""Task registry: one module per task, one line here."""
from mcu_ray.tasks import digits, mubench, tofu

TASKS = {
    "digits": digits.TASK,
    "tofu": tofu.TASK,
    "cifar10": mubench.CIFAR10,
    "ddi": mubench.DDI,
    "nlvr2": mubench.NLVR2,
}
