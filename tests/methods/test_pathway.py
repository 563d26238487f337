"""Pathway methods' knobs and registration: ``pathway_<m>`` for every method, on its task families,
with no loss of its own; the checks that keep the reference's mask and t* search meaningful."""
import re

import pytest

from mcu_ray.methods import METHODS
from mcu_ray.methods.pathway import Params, variants
from mcu_ray.errors import SpecError


def test_every_method_gets_a_pathway_variant_on_its_families():
    base = {name: m for name, m in METHODS.items() if not m.source}
    found = variants(base)
    assert sorted(found) == sorted(f"pathway_{name}" for name in base)
    for name, method in base.items():
        variant = found[f"pathway_{name}"]
        assert (variant.source, variant.families, variant.loss, variant.Params) == (name, method.families, None,
                                                                                   Params)
    assert {name: m.source for name, m in METHODS.items() if m.source} == {f"pathway_{n}": n for n in base}


@pytest.mark.parametrize("knobs,field,words", [
    ({"k": 0.0}, "k", "nothing trains"),
    ({"k": 0.95, "k_r": 0.1}, "k", "k + k_r must be at most 1"),
    ({"retain_ratio": 1.5}, "retain_ratio", "fraction in [0, 1]"),
    ({"retain_ratio": 0.0}, "retain_ratio", "fraction in (0, 1]"),
    ({"steps": 10}, "steps", "set epochs"),
    ({"select_points": 3}, "select_points", "at least 4 points"),
    ({"search_from": 1.0}, "search_from", "t in [0, 1)"),
    ({"optimizer": "adam"}, "optimizer", "sgd, adamw"),
    ({"momentum": 1.0}, "momentum", "[0, 1)"),
    ({"beta_low": -0.1}, "beta_low", "non-negative"),
])
def test_bad_knobs_are_refused_naming_the_field(knobs, field, words):
    with pytest.raises(SpecError, match=re.escape(words)) as err:
        Params(**knobs).check("p")
    assert err.value.path == f"p.{field}"


def test_the_references_defaults_pass_and_k_plus_k_r_may_reach_one():
    Params().check("p")
    Params(k=0.9, k_r=0.1).check("p")
