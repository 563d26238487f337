"""Method registry: one module per unlearning method, one line here."""
from __future__ import annotations

from dataclasses import dataclass

from mcu_ray.methods import bt, ga, gd, npo, pathway, rl, su

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


@dataclass(frozen=True)
class Knobs:
    """One (task, method)'s resolved hyper-parameters, as a sweep file writes them ({param: value, so: {...},
    cl: {...}}): the method's own ``Params``; Sophia's, used where an endpoint trains with the second-order
    optimiser; the curriculum's, where it trains with one."""

    params: object  # a METHODS[method].Params
    so: SophiaParams
    cl: CurriculumParams


def resolve_hparams(method: str, task, values: dict | None, path: str) -> Knobs:
    """The ``Knobs`` of one (task, method): method defaults < the task's tuned defaults < the sweep
    file's ``values``, each block checked."""
    if not isinstance(values, (dict, type(None))):
        raise SpecError(path, values, "expected a mapping {param: value, so: {...}, cl: {...}}")
    values = dict(values or {})
    defaults = dict(task.default_hparams.get(method, {}))
    so, cl = (_checked(cls, values.pop(block, None), f"{path}.{block}", defaults.pop(block, {}))
              for block, cls in (("so", SophiaParams), ("cl", CurriculumParams)))
    return Knobs(_checked(METHODS[method].Params, values, path, defaults), so, cl)


def _checked(cls, values, path: str, defaults: dict):
    """``cls`` built from the file's ``values`` over ``defaults``, then checked (SpecError on a bad value)."""
    knobs = build_dataclass(cls, values, path, overrides=defaults)
    knobs.check(path)
    return knobs
