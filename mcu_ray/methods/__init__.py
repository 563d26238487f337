"""Method registry: one module per unlearning method, one line here."""
from __future__ import annotations

from mcu_ray.methods import bt, ga, gd, npo, pathway, rl, su
from dataclasses import asdict

from mcu_ray.errors import SpecError, build_dataclass
from mcu_ray.methods.curriculum import CurriculumParams
from mcu_ray.methods.optimizers import SophiaParams

METHODS = {
    "ga": ga.METHOD,
    "rl": rl.METHOD,
    "gd": gd.METHOD,
    "npo": npo.METHOD,
    "bt": bt.METHOD,
    "su": su.METHOD,
}
METHODS |= pathway.variants(METHODS)  # pathway_ga, pathway_rl, ...: a curve from the original to that method's endpoint


def resolve_hparams(method: str, task, values: dict | None, path: str) -> dict:
    """{"params": method knobs, "so": Sophia knobs, "cl": curriculum knobs} of one (task, method).

    Method defaults < the task's tuned defaults < the sweep file's values; ``so`` applies
    when an endpoint is trained with the second-order optimiser, ``cl`` with a curriculum.
    """
    if not isinstance(values, (dict, type(None))):
        raise SpecError(path, values, "expected a mapping {param: value, so: {...}, cl: {...}}")
    values = dict(values or {})
    defaults = dict(task.default_hparams.get(method, {}))
    resolved = {}
    for block, cls in (("so", SophiaParams), ("cl", CurriculumParams)):
        knobs = build_dataclass(cls, values.pop(block, None), f"{path}.{block}", overrides=defaults.pop(block, {}))
        knobs.check(f"{path}.{block}")
        resolved[block] = asdict(knobs)
    params = build_dataclass(METHODS[method].Params, values, path, overrides=defaults)
    params.check(path)
    return {"params": asdict(params), **resolved}
