"""The one error a sweep file's refusal raises, and the checks every block of the file shares.

A SpecError names the field path (``tasks[0].ratios[1]``), the value found and what is allowed;
Problems collects independent ones so a file's problems are reported together. The spec, the
method and task registries, the search section and the command line all check with these, so
this module sits at the bottom of the import graph: it imports nothing from mcu_ray.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from typing import Any


class SpecError(ValueError):
    """A sweep file that cannot run; ``path`` is the dotted field path."""

    def __init__(self, path: str, value: Any, allowed: str):
        self.path, self.value, self.allowed = path, value, allowed
        found = "missing" if value is None else f"got {value!r}"
        super().__init__(f"{path or '<top level>'}: {found}; {allowed}")


class SpecErrors(SpecError):
    """Several independent problems of one sweep file, each a SpecError in ``errors``.

    ``path``, ``value`` and ``allowed`` are the first problem's, so code written for one
    error still reads it; ``str()`` lists every problem, one per line.
    """

    def __init__(self, errors: list[SpecError]):
        self.errors = list(errors)
        first = self.errors[0]
        self.path, self.value, self.allowed = first.path, first.value, first.allowed
        ValueError.__init__(self, "\n".join(str(e) for e in self.errors))


def spec_errors(exc: SpecError) -> list[SpecError]:
    """The single problems inside ``exc`` (itself when it is one)."""
    return list(getattr(exc, "errors", [exc]))


FAILED = object()  # what a check that raised returns inside Problems.attempt


class Problems:
    """Runs independent checks and keeps their SpecErrors, so a file's problems are reported together.

    A check that depends on a failed one is skipped (its input is FAILED), not reported twice.
    """

    def __init__(self):
        self.errors: list[SpecError] = []

    def attempt(self, check, *args, **kwargs):
        """``check(*args, **kwargs)``, or FAILED when it raised SpecError (kept)."""
        try:
            return check(*args, **kwargs)
        except SpecError as exc:
            self.errors += spec_errors(exc)
            return FAILED

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            raise SpecErrors(self.errors)


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_value(value: Any, tp, path: str) -> Any:
    """Check one scalar against an annotation (int, float, bool, str); return it coerced.

    Numbers are finite, and a size (MAX_SIZES, by the field's name) at most its bound.
    """
    if tp is bool:
        if not isinstance(value, bool):
            raise SpecError(path, value, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(path, value, "expected an integer")
        check_size(value, path)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(path, value, "expected a number")
        return check_finite(value, path)
    if tp is str:
        if not isinstance(value, str) or not value:
            raise SpecError(path, value, "expected a non-empty string")
        return value
    return value


# field name -> (the largest value it may take, what it counts). A size beyond these is a typo (a zero or
# three too many), not a plan: refused before hours of work or a process that runs out of memory.
MAX_SIZES = {
    "points": (1001, "evaluated points per curve (the paper: 16)"),
    "bends": (100, "bends per curve (the paper: 1)"),
    "epochs": (100_000, "epochs"),
    "steps": (10_000_000, "steps"),
    "batch_size": (1_000_000, "examples per batch"),
    "retain_batch_size": (1_000_000, "examples per batch"),
    "eval_batch_size": (1_000_000, "examples per batch"),
    "eval_size": (1_000_000, "rows per evaluation set"),
    "eval_points_per_task": (1001, "points per evaluation task (a curve has at most 1001)"),
    "synthetic_authors": (100_000, "authors (TOFU has 200)"),
    "num_workers": (10_000, "workers per training job"),
}


def check_size(value: int, path: str) -> None:
    """A SpecError when the field at ``path`` is a size (MAX_SIZES) and ``value`` is beyond its bound."""
    name = re.sub(r"\[\d+\]$", "", path.rpartition(".")[2])
    if name in MAX_SIZES and value > MAX_SIZES[name][0]:
        bound, what = MAX_SIZES[name]
        raise SpecError(path, value, f"expected at most {bound:,} {what}")


def check_finite(value: int | float, path: str) -> float:
    """``value`` as a float; a SpecError for NaN, an infinity, or an integer too large for a float."""
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise SpecError(path, value, "expected a finite number (not .nan, .inf or -.inf)")
    return number


def reject_unknown_keys(raw: dict, names, path: str) -> None:
    """A SpecError for every key of ``raw`` not in ``names``, each with a did-you-mean."""
    problems = Problems()
    for key in raw:
        if key not in names:
            problems.errors.append(SpecError(join_path(path, key), raw[key], f"unknown key{did_you_mean(key, names)}; "
                                                                          f"allowed keys: {', '.join(names)}"))
    problems.raise_any()


def build_dataclass(cls, raw: Any, path: str, overrides: dict | None = None):
    """Build ``cls`` from a mapping, refusing unknown keys and wrong scalar types.

    Fields annotated int/float/bool/str are type-checked; other fields are handed
    over as they are for the caller to check. Used for every block of the sweep
    file and for task options and method hyper-parameters alike.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(path, raw, f"expected a mapping with keys {sorted(f.name for f in dataclasses.fields(cls))}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    problems = Problems()
    problems.attempt(reject_unknown_keys, raw, names, path)
    values = dict(overrides or {})
    for key, value in raw.items():
        if key not in hints:
            continue  # reported above
        if type(value) is type(defaults[key]) and value == defaults[key]:
            values[key] = value  # a default written out (--print-config writes "" for "unset")
            continue
        tp = hints[key]
        if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if value is not None else type(None)
            if value is None:
                values[key] = None
                continue
        values[key] = problems.attempt(check_value, value, tp, join_path(path, key))
    for f in dataclasses.fields(cls):
        if f.name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            problems.errors.append(SpecError(join_path(path, f.name), None, "this field is required"))
    problems.raise_any()
    return cls(**values)


def join_path(path: str, key) -> str:
    """``tasks[0]`` and ``ratios`` -> ``tasks[0].ratios``; an integer key indexes: ``tasks`` and 0 -> ``tasks[0]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)
