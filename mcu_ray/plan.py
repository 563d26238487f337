"""Paper Table 1 -> cells; every artifact addressed by a hash of what determines it.

A cell is (task, setting, method pair, forget ratio, seed). Its two endpoints and its
curves are keyed by content, so an endpoint used by ten cells (or by another sweep
on the same store) is planned, trained and stored once.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, is_dataclass
from itertools import permutations

from mcu_ray.methods import METHODS, Knobs
from mcu_ray.methods.curriculum import CurriculumParams
from mcu_ray.methods.optimizers import SophiaParams
from mcu_ray.spec import CurveFitSpec, SweepSpec
from mcu_ray.tasks import TASKS

# Bump when a change alters what an artifact of an unchanged spec would contain.
SCIENCE_VERSION = 3  # 2: issue 12's fidelity fixes (SuperLoss, NPO, Sophia, random network, ZRF, curves);
# 3: the tiny TOFU models' tokenizer also reads the held-out authors (issue 14's membership attacks)


@dataclass(frozen=True)
class Variant:
    """How one endpoint of a setting is trained."""

    optimizer: str  # "fo" (AdamW) | "so" (Sophia)
    curriculum: str  # "none" | "cl"
    seed_offset: int  # 0 = the cell's seed s, 1 = s + 1


FO, FO_CL, SO = Variant("fo", "none", 0), Variant("fo", "cl", 0), Variant("so", "none", 0)
FO_1, FO_CL_1, SO_1 = Variant("fo", "none", 1), Variant("fo", "cl", 1), Variant("so", "none", 1)

# setting -> (method pairing, endpoint 1, endpoint 2). "same": (m, m) for every method;
# "ordered": (m1, m2) for every ordered pair m1 != m2.  (DESIGN.md section 1, Table 1.)
SETTINGS_TABLE = {
    "Rand": ("same", FO, FO_1),
    "Rand-CL": ("same", FO_CL, FO_CL_1),
    "Rand-SO": ("same", SO, SO_1),
    "CL-Non-CL": ("same", FO_CL, FO),
    "FO-SO": ("same", FO, SO),
    "Met": ("ordered", FO, FO),
    "Met-CL": ("ordered", FO_CL, FO_CL),
    "Met-SO": ("ordered", SO, SO),
    "Met-CL-Non-CL": ("ordered", FO_CL, FO),
    "Met-FO-SO": ("ordered", FO, SO),
}


# Options that say where data lives, not what it is: left out of keys, so a store is
# shared by machines that mount the same data at different paths.
LOCATION_OPTIONS = ("path",)


# Knob blocks a plan item holds as frozen dataclasses (None where they do not apply). As plain
# data (a key's payload, meta.json's "item", a Ray config) they are mappings, {} for None; so are
# the task's options and a curve's fit, which always apply.
KNOB_BLOCKS = ("hparams", "optimizer_params", "curriculum_params")

# Fields renamed since keys were first hashed: hashed under their first names, so that every key
# (and every stored artifact) stays what it was.
HASHED_AS = {"retrained": "reference"}


def _plain(name: str, value):
    if name in KNOB_BLOCKS and value is None:
        return {}
    return asdict(value) if is_dataclass(value) else value


def content_key(kind: str, payload: dict) -> str:
    """``kind-<16 hex>``: a stable hash of the canonical JSON of ``payload`` (frozen blocks as mappings)."""
    payload = {HASHED_AS.get(name, name): _plain(name, value) for name, value in payload.items()}
    if "options" in payload:
        payload = {**payload, "options": {k: v for k, v in payload["options"].items() if k not in LOCATION_OPTIONS}}
    blob = json.dumps({"v": SCIENCE_VERSION, **payload}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class Item:
    """What every artifact of a task block is keyed by first (``task_base``), and its key."""

    key: str
    task: str
    options: object  # the task's frozen Options
    precision: str  # fp32 | bf16-mixed | bf16: how it is computed, so part of its key


@dataclass(frozen=True)
class Original(Item):
    """The model everything unlearns from, trained on all of D."""


@dataclass(frozen=True)
class Retrained(Item):
    """The gold standard: trained from scratch on Dr only (a reference line in figures)."""

    ratio: float


@dataclass(frozen=True)
class Endpoint(Item):
    ratio: float
    method: str
    hparams: object  # the method's knobs: a METHODS[method].Params
    optimizer: str
    curriculum: str
    seed: int
    optimizer_params: SophiaParams | None  # Sophia's knobs when optimizer == "so"
    curriculum_params: CurriculumParams | None  # the curriculum's knobs when curriculum == "cl"
    original: str  # key of the model it unlearns
    retrained: str  # key of the retrained model its metrics are relative to
    source: str = ""  # pathway methods: key of the endpoint their curve runs to (built first)


@dataclass(frozen=True)
class Curve(Item):
    ratio: float
    kind: str  # "linear" | "bezier" | "polychain"
    endpoint_1: str
    endpoint_2: str
    retrained: str  # key of the retrained model its metrics are relative to
    objective: str = ""  # bezier: the first endpoint's method trains the bend ...
    hparams: object = None  # a METHODS[objective].Params
    optimizer: str = "fo"  # ... with that endpoint's optimiser and curriculum (the authors' code)
    optimizer_params: SophiaParams | None = None
    curriculum: str = "none"
    curriculum_params: CurriculumParams | None = None
    fit: CurveFitSpec | None = None  # the bends' training budget (trained curves)
    seed: int = 0
    bends: int = 0  # trained control points (0: the line)
    points: int = 16  # evaluated t values

    @property
    def trained(self) -> bool:
        return self.kind != "linear"


@dataclass(frozen=True)
class Cell:
    key: str
    task: str
    setting: str
    ratio: float
    seed: int
    endpoint_1: str
    endpoint_2: str
    curves: tuple  # (kind, curve key) pairs
    retrained: str


@dataclass
class Plan:
    cells: list
    originals: dict
    retrained: dict
    endpoints: dict
    curves: dict
    points: int

    def counts(self) -> dict:
        """Cells, distinct artifacts, training jobs and evaluated model points."""
        trained_curves = sum(c.trained for c in self.curves.values())
        interior = max(self.points - 2, 0)  # t=0 and t=1 are the endpoints, evaluated once each
        models = len(self.originals) + len(self.retrained) + len(self.endpoints)
        # the original is evaluated once per (task, ratio) beside its retrained model;
        # a pathway endpoint evaluates its curve at select_points t values, then at t*
        evaluated_models = 2 * len(self.retrained) + len(self.endpoints) + sum(
            e.hparams.select_points for e in self.endpoints.values() if e.source)
        return {
            "cells": len(self.cells),
            "endpoints": len(self.endpoints),
            "curves": len(self.curves),
            "trained_curves": trained_curves,
            "originals": len(self.originals),
            "retrained": len(self.retrained),
            "training_jobs": models + trained_curves,
            "evaluations": evaluated_models + len(self.curves) * interior,
            "points_per_curve": self.points,
        }


    def subset(self, cells: list) -> Plan:
        """The plan of ``cells`` alone (``--only``): the artifacts they need, in this plan's order."""
        endpoints = {key for cell in cells for key in (cell.endpoint_1, cell.endpoint_2)}
        endpoints |= {self.endpoints[key].source for key in endpoints if self.endpoints[key].source}
        curves = {key for cell in cells for _, key in cell.curves}
        retrained = {cell.retrained for cell in cells}
        originals = {self.endpoints[key].original for key in endpoints}

        def keep(items: dict, keys: set) -> dict:
            return {key: item for key, item in items.items() if key in keys}

        return Plan(list(cells), keep(self.originals, originals), keep(self.retrained, retrained),
                    keep(self.endpoints, endpoints), keep(self.curves, curves), self.points)


def make_plan(spec: SweepSpec) -> Plan:
    """Every cell of the spec's grid, and the distinct artifacts it needs."""
    originals, retrained, endpoints, curves, cells = {}, {}, {}, {}, []

    def add(store: dict, item):
        store.setdefault(item.key, item)
        return item.key

    for task in spec.tasks:
        base = task_base(task)
        original = add(originals, original_of(task))
        fit = task.curve_fit
        for ratio in task.ratios:
            ref = add(retrained, retrained_of(task, ratio))
            for seed in spec.seeds:
                for setting in task.settings or spec.settings:
                    pairing, v1, v2 = SETTINGS_TABLE[setting]
                    pairs = [(m, m) for m in task.methods] if pairing == "same" else list(permutations(task.methods, 2))
                    for m1, m2 in pairs:
                        ends = []
                        for method, variant in ((m1, v1), (m2, v2)):
                            common = (base, ratio, task.hparams, variant, seed, original, ref)
                            # pathway_<m>: the endpoint of m under the same variant, then the curve to it
                            source = METHODS[method].source
                            source_key = add(endpoints, _endpoint(*common, source)) if source else ""
                            ends.append(add(endpoints, _endpoint(*common, method, source_key)))
                        e1, e2 = ends
                        # a Bezier bend trains with the first endpoint's objective (a pathway's: its source's)
                        objective = endpoints[endpoints[e1].source or e1]
                        cell_curves = []
                        for kind in spec.curves:
                            cell_curves.append((kind, add(curves, _curve(kind, base, ratio, e1, e2, objective,
                                                                          ref, fit, spec.points, spec.bends))))
                        cell_payload = {**base, "setting": setting, "ratio": ratio, "seed": seed,
                                        "endpoint_1": e1, "endpoint_2": e2, "curves": tuple(cell_curves)}
                        cells.append(Cell(content_key("cell", cell_payload), task.name, setting, ratio, seed, e1, e2,
                                          tuple(cell_curves), ref))
    return Plan(cells, originals, retrained, endpoints, curves, spec.points)


def task_base(task) -> dict:
    """What every artifact of a task's block is keyed by first."""
    return {"task": task.name, "options": task.options, "precision": task.precision}


def original_of(task) -> Original:
    return Original(content_key("orig", task_base(task)), **task_base(task))


def retrained_of(task, ratio: float) -> Retrained:
    base = task_base(task)
    return Retrained(content_key("retrain", {**base, "ratio": ratio}), ratio=ratio, **base)


def endpoint_of(task, ratio: float, method: str, hparams: Knobs, variant: Variant, seed: int) -> Endpoint:
    """The endpoint a grid of ``task`` would plan for ``method`` with ``hparams``: the
    same key, so a search trial and a grid cell on the same values share one artifact."""
    return _endpoint(task_base(task), ratio, {method: hparams}, variant, seed, original_of(task).key,
                     retrained_of(task, ratio).key, method)


def _endpoint(base: dict, ratio: float, hparams: dict, variant: Variant, seed: int, original: str, ref: str,
              method: str, source: str = "") -> Endpoint:
    knobs = hparams[method]
    payload = {**base, "ratio": ratio, "method": method, "hparams": knobs.params,
               "optimizer": variant.optimizer, "curriculum": variant.curriculum,
               "optimizer_params": knobs.so if variant.optimizer == "so" else None,
               "curriculum_params": knobs.cl if variant.curriculum == "cl" else None,
               "seed": seed + variant.seed_offset, "original": original, "retrained": ref,
               **({"source": source} if source else {})}  # absent for other methods: their keys are unchanged
    return Endpoint(content_key("ep", payload), **payload)


def _curve(kind: str, base: dict, ratio: float, e1: str, e2: str, objective: Endpoint, ref: str, fit: CurveFitSpec,
           points: int, bends: int) -> Curve:
    if kind == "linear":
        # phi(t) = (1-t) theta_1 + t theta_2 is the same line both ways: key the unordered pair
        e1, e2 = sorted((e1, e2))
        payload = {**base, "kind": kind, "ratio": ratio, "endpoint_1": e1, "endpoint_2": e2, "retrained": ref,
                   "points": points}
        return Curve(content_key("curve", payload), **payload)
    payload = {**base, "kind": kind, "ratio": ratio, "endpoint_1": e1, "endpoint_2": e2, "retrained": ref,
               "objective": objective.method, "hparams": objective.hparams, "optimizer": objective.optimizer,
               "optimizer_params": objective.optimizer_params, "curriculum": objective.curriculum,
               "curriculum_params": objective.curriculum_params, "fit": fit, "seed": objective.seed, "bends": bends,
               "points": points}
    return Curve(content_key("curve", payload), **payload)


ITEMS = {"original": Original, "retrained": Retrained, "endpoint": Endpoint, "bend": Curve, "curve": Curve}


def item_as_dict(item) -> dict:
    """A plan item as plain data: for meta.json's "item" and across the Ray boundary."""
    return {f.name: _plain(f.name, getattr(item, f.name)) for f in fields(item)}


def options_from_dict(task: str, data: dict):
    """A task's frozen Options from their plain form (meta.json's item, an export's config.json)."""
    return TASKS[task].Options(**data)


def knobs_from_dict(method: str, data: dict) -> Knobs:
    """A method's ``Knobs`` from their plain form ({params, so, cl} mappings: spec.json's)."""
    return Knobs(METHODS[method].Params(**data["params"]), SophiaParams(**data["so"]), CurriculumParams(**data["cl"]))


def item_from_dict(kind: str, data: dict):
    """The plan item of ``item_as_dict`` (``kind``: a job's, "curve" or "endpoint"), its blocks frozen again.
    Reads meta.json items written before a field was renamed (``HASHED_AS``) too."""
    cls = ITEMS[kind]
    data = {**{new: data[old] for new, old in HASHED_AS.items() if old in data}, **data}
    item = {f.name: data[f.name] for f in fields(cls) if f.name in data}
    item["options"] = options_from_dict(item["task"], item["options"])
    if cls in (Endpoint, Curve):
        method = item["method"] if cls is Endpoint else item["objective"]
        blocks = {"hparams": METHODS[method].Params if method else None, "optimizer_params": SophiaParams,
                  "curriculum_params": CurriculumParams, "fit": CurveFitSpec}
        item |= {name: make(**item[name]) if item.get(name) else None for name, make in blocks.items() if name in item}
    return cls(**item)
