"""MU-Bench's classification tasks (Cheng & Amiri 2024) through datasets and transformers: what the three share.

One module per task (``cifar10``, ``ddi``, ``nlvr2``) declares what it reads (a ``Modality``) and builds its
tiny model; ``task`` makes the rest of a ``ClassificationTask`` from them, the same for all three.
Data: ``datasets.load_dataset(dataset)``, where ``dataset`` is a hub id or a local folder
in the hub layout; the forget set is MU-Bench's index list (``forget_index_file``: ratio r
takes the first r/10 of a list covering 10 %) or, without one, a seeded random subset.
Models: a Hugging Face checkpoint by name or path, or ``tiny`` (built from a config,
with a tokenizer trained on the task text) for CPU runs and tests.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from mcu_ray.errors import SpecError
from mcu_ray.tasks.base import absolute, check_retain_checkpoint
from mcu_ray.tasks.classification import ClassificationTask, check_index_file, check_val_fraction, hf_logits
from mcu_ray.tasks.tokenizers import train_bpe

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Options:
    dataset: str = ""  # a hub id, or a local folder in the hub layout ("" = the task's default hub id)
    train_split: str = "train"
    test_split: str = "test"
    image_columns: str = ""  # comma-separated image columns ("" = the task's default)
    text_column: str = ""
    label_column: str = "label"
    max_train: int = 0  # keep the first N training rows (0 = all)
    max_test: int = 0
    forget_index_file: str = ""  # MU-Bench's list of forget indices (one per line, 10 % of the training set)
    model: str = "tiny"  # "tiny" (from a config) or a Hugging Face checkpoint name / path
    image_size: int = 32
    max_length: int = 64  # text tokens
    vocab_size: int = 2000  # tiny models: the BPE tokenizer trained on the task text
    hidden_size: int = 32  # tiny models
    split_seed: int = 0
    # training rows held out of D as the validation split (ClassificationData): seeded rows outside the
    # forget list, never trained on; pathway unlearning's forget target. 0 = MU-Bench's D, every training row
    val_fraction: float = 0.1
    model_seed: int = 0
    epochs: int = 3  # training of the original model (and the retrained model); 0 = `model` as is
    # a retain-only checkpoint name or path ({retain} / {ratio}: one per forget ratio); "" = train one on Dr here
    reference_model: str = ""
    lr: float = 1e-3
    batch_size: int = 64
    weight_decay: float = 0.0

    def normalized(self) -> "Options":
        """Local paths made absolute: Ray workers run in other directories."""
        return dataclasses.replace(self, dataset=absolute(self.dataset), model=absolute(self.model),
                                   forget_index_file=absolute(self.forget_index_file) if self.forget_index_file else "",
                                   reference_model=absolute(self.reference_model) if self.reference_model else "")

    def check(self, path: str) -> None:
        if self.dataset.startswith(("/", "./", "../", "~")):
            check_dataset_folder(self.dataset, f"{path}.dataset")
        if self.forget_index_file:
            check_index_file(self.forget_index_file, f"{path}.forget_index_file")
        if self.epochs < 0 or (self.epochs == 0 and self.model == "tiny"):
            raise SpecError(f"{path}.epochs", self.epochs, "expected >= 1 (0 only for a checkpoint already fine-tuned)")
        check_retain_checkpoint(self.reference_model, self.epochs, path)  # never silently the original itself
        check_val_fraction(self.val_fraction, path)
        for key in ("image_size", "max_length", "vocab_size", "hidden_size", "batch_size"):
            if getattr(self, key) < 1:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected an integer >= 1")


def check_dataset_folder(folder: str, field: str) -> None:
    """A SpecError naming ``field`` unless ``folder`` holds data files ``datasets.load_dataset`` reads
    (the hub layout, e.g. data/train-00000-of-00001.parquet)."""
    local = Path(folder).expanduser()
    if not local.is_dir():
        raise SpecError(field, folder, "no such folder (a hub id has the form org/name)")
    from datasets.data_files import EmptyDatasetError, get_data_patterns

    try:
        get_data_patterns(str(local))
    except EmptyDatasetError:
        raise SpecError(field, folder, "no data files there (Parquet, Arrow, CSV, JSON...): expected a dataset "
                                       "folder in the hub layout, e.g. data/train-00000-of-00001.parquet") from None


@dataclass(frozen=True)
class Modality:
    """What one MU-Bench task reads and builds."""

    name: str  # the registry key
    images: tuple  # default image columns
    text: str  # default text column ("" = none)
    num_labels: int
    default_dataset: str  # "" = none: the sweep file names one
    checkpoint_class: str  # the transformers class a checkpoint of this task loads into


def _columns(opts: Options, modality: Modality) -> tuple[tuple, str]:
    images = tuple(c.strip() for c in opts.image_columns.split(",") if c.strip()) or modality.images
    return images, opts.text_column or modality.text


def _dataset(modality: Modality, opts: Options) -> str:
    name = opts.dataset or modality.default_dataset
    return str(Path(name).expanduser()) if name.startswith(("/", ".", "~")) else name


def _rows(modality: Modality, opts: Options, split: str, limit: int):
    import datasets

    ds = datasets.load_dataset(_dataset(modality, opts), split=split)
    return ds.select(range(min(limit, len(ds)))) if limit else ds


def _pixels(images, size: int) -> torch.Tensor:
    """PIL images -> normalised (n, 3, size, size) float tensors (ImageNet statistics)."""
    arrays = [np.asarray(img.convert("RGB").resize((size, size)), dtype=np.float32) / 255.0 for img in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (n, 3, H, W)
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


@lru_cache(maxsize=4)
def _tokenizer(modality: Modality, opts: Options):
    if opts.model != "tiny":
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(opts.model)
    _, text = _columns(opts, modality)
    # the text column alone: iterating rows would decode every image too
    return train_bpe(list(_rows(modality, opts, opts.train_split, opts.max_train)[text]), opts.vocab_size)


def input_columns(modality: Modality, opts: Options) -> tuple[tuple, str]:
    """(image columns, text column) a task's options read: what its model's inputs are made from."""
    return _columns(opts, modality)


def tokenizer_for(modality: Modality, opts: Options):
    """The text tokenizer a task's inputs are encoded with (a checkpoint's own, or the tiny models'
    BPE trained on the task text); None for an images-only task."""
    if not input_columns(modality, opts)[1]:
        return None
    return _tokenizer(modality, opts)


def _encode(modality: Modality, opts: Options, rows) -> dict:
    images, text = _columns(opts, modality)
    batch = {}
    if images:
        pixels = [_pixels(rows[c], opts.image_size) for c in images]
        batch["pixel_values"] = pixels[0] if len(pixels) == 1 else torch.stack(pixels, dim=1)  # (n, [k,] 3, H, W)
    if text:
        tok = _tokenizer(modality, opts)
        enc = tok(list(rows[text]), padding="max_length", truncation=True, max_length=opts.max_length,
                  return_tensors="pt")
        batch["input_ids"], batch["attention_mask"] = enc["input_ids"], enc["attention_mask"]
    batch["y"] = torch.tensor(rows[opts.label_column], dtype=torch.long)
    return batch


def loader(modality: Modality):
    def load_arrays(opts: Options):
        train = _encode(modality, opts, _rows(modality, opts, opts.train_split, opts.max_train))
        test = _encode(modality, opts, _rows(modality, opts, opts.test_split, opts.max_test))
        return train, test, modality.num_labels
    return load_arrays


def _checkpoint_class(modality: Modality):
    import transformers

    return getattr(transformers, modality.checkpoint_class)


def builder(modality: Modality, build_tiny: Callable):
    """Options -> the task's model: the checkpoint ``model`` names, or ``build_tiny(options, tokenizer)``
    (the tokenizer None for an images-only task)."""
    def build_model(opts: Options):
        if opts.model != "tiny":
            return _checkpoint_class(modality).from_pretrained(opts.model, num_labels=modality.num_labels,
                                                               ignore_mismatched_sizes=True)
        return build_tiny(opts, tokenizer_for(modality, opts))
    return build_model


def random_builder(modality: Modality, build_tiny: Callable):
    """The checkpoint's architecture from its config alone, randomly initialised (no pretrained weights):
    Bad Teaching's incompetent teacher and ZRF's reference. Tiny models are built from a config already."""
    build_model = builder(modality, build_tiny)

    def build_random(opts: Options):
        from transformers import AutoConfig

        if opts.model == "tiny":
            return build_model(opts)
        config = AutoConfig.from_pretrained(opts.model, num_labels=modality.num_labels)
        cls = _checkpoint_class(modality)
        # an Auto class picks the concrete class from the config; a concrete one (ViLT's) is called with it
        return cls.from_config(config) if hasattr(cls, "from_config") else cls(config)
    return build_random


def needs_dataset(modality: Modality):
    def check(options: Options, path: str) -> None:
        if not (options.dataset or modality.default_dataset):
            raise SpecError(f"{path}.dataset", options.dataset,
                            f"{modality.name} has no default: set a hub id or a local folder in the hub layout")
    return check


@dataclass(kw_only=True)
class MUBenchTask(ClassificationTask):
    """A ClassificationTask that also says what it reads (export saves the matching preprocessors)."""

    modality: Modality


def task(modality: Modality, build_tiny: Callable, vectorizable: bool = True) -> MUBenchTask:
    """A MU-Bench task from what it reads and its tiny model, ``build_tiny(options, tokenizer)``."""
    return MUBenchTask(
        name=modality.name, Options=Options, load_arrays=loader(modality),
        build_model=builder(modality, build_tiny), build_random=random_builder(modality, build_tiny),
        check_extra=needs_dataset(modality),
        vectorizable=vectorizable,
        default_ratios=(2, 4, 6, 8, 10),  # MU-Bench's ratios
        # MU-Bench's unlearning settings (lr 1e-5 .. 5e-5 for fine-tuned checkpoints) need
        # per-model tuning; these suit the tiny models and are the sweep file's to override.
        default_hparams={m: {"epochs": 3, "lr": 1e-4, "batch_size": 32, "retain_batch_size": 32}
                         for m in ("ga", "rl", "gd", "npo", "bt", "su")},
        logits=hf_logits, modality=modality)
