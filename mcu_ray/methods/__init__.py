"""Method registry: one module per unlearning method, one line here."""
from __future__ import annotations

from mcu_ray.methods import ga, gd, npo, rl
from mcu_ray.spec import build_dataclass

METHODS = {
    "ga": ga.METHOD,
    "gd": gd.METHOD,
    "npo": npo.METHOD,
    "rl": rl.METHOD,
}


def resolve_hparams(method: str, task, values: dict | None, path: str):
    """Method defaults < the task's tuned defaults < the sweep file's values."""
    params_cls = METHODS[method].Params
    params = build_dataclass(params_cls, values, path, overrides=task.default_hparams.get(method, {}))
    params.check(path)
    return params
