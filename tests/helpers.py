"""What several test modules build the same way: small sweep files, a hub-layout dataset folder,
a curve's control points, and where the repository and the shared test data are.

Fixtures live in ``conftest.py``; everything a test imports lives here (a test module never
imports another test module or ``conftest``: ``tests/test_layout.py`` checks it).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
# TOFU's files, from shared/ beside the checkout unless MCU_TOFU_DIR says where
SHARED_TOFU = Path(os.environ.get("MCU_TOFU_DIR", REPO / ".." / "shared/data/tofu"))


def tiny_digits_task(**overrides) -> dict:
    """A digits task block small enough for a grid to finish in well under a minute."""
    task = {
        "name": "digits",
        "ratios": [5],
        "methods": ["ga", "rl"],
        "options": {"epochs": 3, "width": 4},
        "hparams": {"ga": {"epochs": 1}, "rl": {"epochs": 1}},
        "curve_fit": {"epochs": 1},
    }
    task.update(overrides)
    return task


def good() -> dict:
    """A valid sweep document: the tiny digits task under Rand and Met."""
    return {"name": "t", "settings": ["Rand", "Met"], "tasks": [tiny_digits_task()]}


DELETE = object()  # ``mutate``'s value for "remove this key"


def mutate(path_and_value):
    """``good()`` with the value at a key path (``["tasks", 0, "ratios"]``) replaced, or DELETEd."""
    spec = good()
    target = spec
    *parents, last = path_and_value[0]
    for key in parents:
        target = target[key]
    if path_and_value[1] is DELETE:
        del target[last]
    else:
        target[last] = path_and_value[1]
    return spec


def several_errors() -> dict:
    """One document with eight independent problems."""
    return {"name": "a/b", "tolernce": 0.1, "settings": ["Rand", "Met"], "points": 2,
            "resources": {"train": {"grad_accum": 0}},
            "tasks": [tiny_digits_task(ratios=[150], hparams={"ga": {"lr": -1}, "rl": {"step": 3}}),
                      {"name": "digit", "ratios": [5], "methods": ["ga", "rl"]}]}


# several_errors()'s fields in the order they are checked: unknown keys, top-level fields, resources, each task
# (its hparams per method)
SEVERAL = ["tolernce", "name", "points", "resources.train.grad_accum", "tasks[0].ratios[0]", "tasks[0].hparams.ga.lr",
           "tasks[0].hparams.rl.step", "tasks[1].name"]


def sweep_file(tmp_path, **top) -> str:
    """A 4-cell digits sweep file: Rand (ga/ga, rl/rl) and Met (ga/rl, rl/ga); ``top`` adds top-level keys."""
    spec = {"name": "cli", "settings": ["Rand", "Met"], "points": 3, "tasks": [tiny_digits_task()], **top}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


WORDS = ["aspirin", "warfarin", "increases", "decreases", "effect", "level", "of", "the", "with", "no", "interaction"]


def write_hub_folder(root: Path, name: str, n_train: int = 48, n_test: int = 16) -> Path:
    """A dataset folder as the hub lays it out (data/<split>-*.parquet), images stored as bytes."""
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    labels = {"cifar10": 10, "ddi": 5, "nlvr2": 2}[name]

    def image(label):  # a colour per class, plus noise: learnable
        base = np.full((16, 16, 3), 20 * label, dtype=np.uint8)
        return Image.fromarray((base + rng.integers(0, 30, base.shape)).astype(np.uint8))

    def sentence(label):
        return " ".join(rng.choice(WORDS, 6)) + f" class{label}"

    folder = root / name
    for split, n in (("train", n_train), ("test", n_test)):
        y = [int(i % labels) for i in range(n)]
        cols, features = {"label": y}, {"label": datasets.ClassLabel(num_classes=labels)}
        if name in ("cifar10", "nlvr2"):
            keys = ["img"] if name == "cifar10" else ["left_image", "right_image"]
            for key in keys:
                cols[key], features[key] = [image(lab) for lab in y], datasets.Image()
        if name in ("ddi", "nlvr2"):
            cols["sentence"], features["sentence"] = [sentence(lab) for lab in y], datasets.Value("string")
        (folder / "data").mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(cols, features=datasets.Features(features)).to_parquet(
            str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


def random_control_points(task, options: dict) -> list[dict]:
    """Three differently initialised networks of a task as a curve's control points (a Bezier curve)."""
    from mcu_ray.curves import curve_parameters

    models = [task.new_model(options, seed=s) for s in (1, 2, 3)]
    names = curve_parameters(models[0])
    return [{n: dict(m.named_parameters())[n].detach() for n in names} for m in models]
