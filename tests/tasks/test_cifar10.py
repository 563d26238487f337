"""CIFAR-10 as MU-Bench runs it: images alone, a ResNet, the hub's uoft-cs/cifar10 when no dataset is named."""
from mcu_ray.spec import parse_spec
from mcu_ray.tasks.cifar10 import TASK
from tests.helpers import mubench_end_to_end


def test_trains_unlearns_and_evaluates_from_hub_layout(tmp_path):
    """The model sees the pixels of the one image column, (rows, 3, image_size, image_size), and no text."""
    data = mubench_end_to_end(tmp_path, "cifar10")
    assert data.train["pixel_values"].shape == (48, 3, 16, 16) and "input_ids" not in data.train


def test_the_tiny_model_is_a_two_stage_resnet_of_ten_classes():
    model = TASK.build_model(TASK.Options(hidden_size=8))
    assert type(model).__name__ == "ResNetForImageClassification"
    assert (model.config.hidden_sizes, model.config.depths, model.config.num_labels) == ([8, 16], [1, 1], 10)


def test_no_dataset_means_the_hub_release():
    spec = parse_spec({"name": "m", "settings": ["Rand"], "tasks": [{"name": "cifar10", "ratios": [2], "methods": ["ga"]}]})
    assert spec.tasks[0].options.dataset == ""  # accepted: the default hub id is used at load time
    assert TASK.modality.default_dataset == "uoft-cs/cifar10"
