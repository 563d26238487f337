"""DDI-2013 as MU-Bench runs it: a sentence alone, a BERT-style encoder, and no default dataset."""
import pytest

from mcu_ray.errors import SpecError
from mcu_ray.spec import parse_spec
from tests.helpers import mubench_end_to_end


def test_trains_unlearns_and_evaluates_from_hub_layout(tmp_path):
    """The model sees the sentence as max_length token ids with their mask, and no pixels."""
    data = mubench_end_to_end(tmp_path, "ddi")
    assert data.train["input_ids"].shape == data.train["attention_mask"].shape == (48, 12)
    assert "pixel_values" not in data.train


def test_a_dataset_must_be_named():
    with pytest.raises(SpecError, match=r"tasks\[0\].options.dataset: got ''; ddi has no default"):
        parse_spec({"name": "m", "settings": ["Rand"], "tasks": [{"name": "ddi", "ratios": [2], "methods": ["ga"]}]})
