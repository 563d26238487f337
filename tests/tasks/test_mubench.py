"""The base MU-Bench's tasks share: MU-Bench's forget-index lists, the dataset option's checks, and what a
task's modality makes of its options (each task's own data and model: tests/tasks/test_<task>.py)."""
import os
from pathlib import Path

import pytest

from mcu_ray.errors import SpecError
from mcu_ray.spec import parse_spec
from mcu_ray.tasks import mubench
from mcu_ray.tasks.classification import forget_indices_from_file
from tests.helpers import REPO

SHARED_DF = Path(os.environ.get("MCU_MUBENCH_DF_DIR", REPO / ".." / "shared/data/mubench_df"))


@pytest.fixture(scope="module")
def shared_lists() -> Path:
    if not (SHARED_DF / "cifar10.txt").is_file():
        pytest.fail(f"MU-Bench index lists not found at {SHARED_DF}: check out shared/ beside the repo "
                    "or set MCU_MUBENCH_DF_DIR")
    return SHARED_DF


@pytest.mark.parametrize("name,size", [("cifar10", 50000), ("ddi", 25296), ("nlvr2", 86364)])  # training-set sizes
def test_mubench_index_lists(shared_lists, name, size):
    listed = [int(x) for x in open(shared_lists / f"{name}.txt") if x.strip()]
    forget2, retain2 = forget_indices_from_file(str(shared_lists / f"{name}.txt"), size, 2)
    forget10, _ = forget_indices_from_file(str(shared_lists / f"{name}.txt"), size, 10)
    assert len(forget10) == len(listed) and len(forget2) == round(len(listed) / 5)
    assert set(forget2.tolist()) == set(listed[: len(forget2)]) <= set(forget10.tolist())  # first r/10 of the list
    assert len(forget2) + len(retain2) == size and set(forget2.tolist()).isdisjoint(retain2.tolist())
    with pytest.raises(ValueError, match="indices"):
        forget_indices_from_file(str(shared_lists / f"{name}.txt"), 100, 2)  # list beyond a 100-row dataset


def test_a_local_dataset_folder_must_exist():
    with pytest.raises(SpecError, match=r"options.dataset: got '/nope'; no such folder"):
        parse_spec({"name": "m", "settings": ["Rand"], "tasks": [
            {"name": "cifar10", "ratios": [2], "methods": ["ga"], "options": {"dataset": "/nope"}}]})


def test_options_override_the_modalitys_columns_and_an_images_only_task_has_no_tokenizer():
    """``image_columns`` (comma-separated, blanks dropped) and ``text_column`` replace the modality's defaults;
    with no text column at all there is nothing to tokenise (and no dataset is read to train a tokenizer)."""
    modality = mubench.Modality(name="x", images=("img",), text="", num_labels=2, default_dataset="org/x",
                                checkpoint_class="AutoModelForImageClassification")
    assert mubench.input_columns(modality, mubench.Options()) == (("img",), "")
    assert mubench.input_columns(modality, mubench.Options(image_columns=" a, ,b ", text_column="caption")) == (
        ("a", "b"), "caption")
    assert mubench.tokenizer_for(modality, mubench.Options(dataset="/nowhere")) is None
