"""Export one model of a store as a Hugging Face folder that other tools load with ``from_pretrained``.

    python -m mcu_ray.export mcu_runs ep-1a2b3c4d5e6f7a8b exported/npo         # an endpoint
    python -m mcu_ray.export mcu_runs retrain-0f1e2d3c4b5a6978 exported/retrained
    python -m mcu_ray.export mcu_runs curve-0123456789abcdef --t 0.4 exported/phi
    python -m mcu_ray.export mcu_runs cell-0123456789abcdef --curve bezier --t 0.4 exported/phi

KEY_OR_CELL is an artifact key (a folder of <storage>/artifacts: orig-, retrain-, ep-, curve-) or a
``cell_id`` of a sweep's results table. A curve (or a cell, whose curves its ``--curve`` picks) needs
``--t``: on a curve key, t runs along the curve as stored (its points.parquet); on a cell, as the
results table has it (t = 0 is the cell's endpoint_1). A t within 1e-6 of an evaluated point is that
point (the results table rounds t to 6 decimals); t = 0 and t = 1 are the endpoints themselves.

What the folder holds:
- a Hugging Face model (TOFU's causal LMs, MU-Bench's classifiers): its ``save_pretrained``, LoRA
  adapters merged into their base (``merge_and_unload``) so a plain ``from_pretrained`` loads it, and
  its preprocessing: the tokenizer (tiny models: the BPE tokenizer trained on the task text) and, for
  images, an image processor equal to mcu_ray's (PIL bicubic resize, ImageNet mean and std);
- another network (digits' conv net): ``model.safetensors`` and ``config.json`` (task and options)
  through huggingface_hub's ``PyTorchModelHubMixin``: ``mcu_ray.export.Classifier.from_pretrained``;
- ``README.md``, a model card with what the artifact's meta.json records (mcu_ray.model_card), and
  ``mcu_ray.json``, the same facts for programs.
A curve point is phi(t) as evaluation builds it (``evaluate.evaluate_curve_points``): the task's
model, its curve parameters set by ``curves.load_point`` from ``jobs.control_points`` blended as
``jobs.blend`` says, and for classifiers BatchNorm statistics re-estimated on the curve's Dr
(``ClassificationTask.evaluate``). Exits 2 on bad input, naming the argument, its value and what is allowed.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow.parquet as pq
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from mcu_ray.curves import load_point, load_state
from mcu_ray.errors import SpecError, did_you_mean
from mcu_ray.evaluate import task_data
from mcu_ray.jobs import bend_key, blend, control_points
from mcu_ray.model_card import model_card
from mcu_ray.placement import Placement
from mcu_ray.plan import item_from_dict, options_from_dict
from mcu_ray.store import Store
from mcu_ray.tasks import TASKS
from mcu_ray.tasks.batchnorm import recompute_batchnorm
from mcu_ray.tasks.classification import ClassificationTask
from mcu_ray.version import __version__

MODELS = ("original", "retrained", "endpoint")  # artifact kinds that are one model's weights
SNAP = 1e-6  # a t this close to an evaluated point is that point


@dataclass(frozen=True)
class Target:
    """One model point of a store: an artifact's own weights (``t`` None) or phi(t) of a curve."""

    key: str  # the model's artifact key, or the curve's
    meta: dict  # that artifact's meta.json
    t: float | None = None  # on the curve, in its stored orientation
    metrics: dict = field(default_factory=dict)  # the point's stored evaluation, where there is one
    named_by: dict = field(default_factory=dict)  # how it was asked for: a curve's t, a cell's row


class Classifier(nn.Module, PyTorchModelHubMixin, library_name="mcu_ray",
                 tags=["mcu_ray", "machine-unlearning", "mode-connectivity"]):
    """A task's own network (not a transformers model) that ``save_pretrained`` / ``from_pretrained``
    write and read as ``model.safetensors`` (its state dict under ``net.``) and ``config.json``."""

    def __init__(self, task: str, options: dict):
        """``options`` as config.json keeps them (a mapping), read back by ``from_pretrained``."""
        super().__init__()
        self.net = TASKS[task].new_model(options_from_dict(task, options), seed=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (batch, classes)


# ----------------------------------------------------------------------------- what to export


def resolve(store: Store, name: str, t: float | None = None, curve: str | None = None) -> Target:
    """The model point ``name`` (an artifact key or a cell id) and ``t`` / ``curve`` designate."""
    if t is not None and not 0.0 <= t <= 1.0:
        raise SpecError("--t", t, "expected a number in [0, 1] (0: the curve's first endpoint, 1: its second)")
    if store.has_artifact(name):
        if curve is not None:
            raise SpecError("--curve", curve, f"only with a cell id: {name} is an artifact, which names itself")
        return _artifact(store, name, t, {})
    found = find_cell(store, name)
    if found is None:
        known = [*store.folders("artifacts"), *(c for s in store.folders() for c in _cell_ids(store, s))]
        raise SpecError("KEY_OR_CELL", name, f"expected an artifact key of {store.uri}/artifacts (orig-, retrain-, "
                                             f"ep-, curve-) or a cell_id of a sweep's results table"
                                             f"{did_you_mean(name, known)}")
    return _cell(store, *found, t, curve)


def _artifact(store: Store, key: str, t: float | None, named_by: dict) -> Target:
    meta, status = store.read_meta(key), store.status(key, checksums=False)  # the weights are checked as they load
    kind = meta.get("kind", "")
    if status.failed:
        raise SpecError("KEY_OR_CELL", key, f"this {kind} {status.state.value} ({status.reason}) and has no "
                                            f"weights: export a model that trained")
    if kind in MODELS:
        if t is not None:
            raise SpecError("--t", t, f"{key} is one model (an {kind}), not a curve: leave --t out")
        return Target(key, meta, metrics=meta.get("metrics", {}), named_by=named_by)
    if kind != "curve_points":
        raise SpecError("KEY_OR_CELL", key, f"a {kind or 'bend'} artifact is not a model: export an original, a "
                                            f"retrained model, an endpoint, or a curve (curve-...) with --t")
    if t is None:
        raise SpecError("--t", None, f"{key} is a curve: give the point, a number in [0, 1]")
    item = item_from_dict("curve", meta["item"])
    rows = store.load_points(key).to_pylist()  # the evaluated interior points
    t = next((s for s in (0.0, 1.0, *(r["t"] for r in rows)) if abs(s - t) <= SNAP), t)  # an evaluated point's
    named_by = {**named_by, "curve_key": key, "curve_t": t}
    if t in (0.0, 1.0):  # its endpoints themselves, as the results table's t = 0 and t = 1 rows are
        return _artifact(store, item.endpoint_1 if t == 0.0 else item.endpoint_2, None, named_by)
    evaluated = [{k: v for k, v in r.items() if k != "t"} for r in rows if r["t"] == t]
    return Target(key, meta, t=t, metrics=evaluated[0] if evaluated else {}, named_by=named_by)


def _cell_ids(store: Store, sweep: str) -> list[str]:
    return [path.rsplit("/", 1)[1][:-len(".parquet")] for path in store.table_files(sweep, "results")]


def find_cell(store: Store, cell_id: str):
    """(sweep, the cell's results rows as a DataFrame) of the first sweep whose results hold the cell; None."""
    for sweep in store.folders():
        if store.has_table(sweep, "results", cell_id):
            blob = store.read_bytes(sweep, "results", f"{cell_id}.parquet")
            return sweep, pq.read_table(io.BytesIO(blob)).to_pandas()
    return None


def _cell(store: Store, sweep: str, rows, t: float | None, curve: str | None) -> Target:
    cell_id = rows["cell_id"].iloc[0]
    kinds = list(dict.fromkeys(rows["curve"].dropna()))
    if curve is None and len(kinds) == 1:
        curve = kinds[0]
    if curve not in kinds:
        raise SpecError("--curve", curve, f"cell {cell_id} has the curves {', '.join(kinds) or '(none: it failed)'}")
    if t is None:
        raise SpecError("--t", None, "a cell is a curve between its endpoints: give the point, a number in [0, 1] "
                                     "(0: endpoint_1, as in the results table)")
    of_curve = rows[rows["curve"] == curve]
    failed = of_curve[of_curve["status"] != "ok"]
    if len(failed):
        raise SpecError("KEY_OR_CELL", cell_id, f"its {curve} curve is {failed['status'].iloc[0]} "
                                                f"({failed['reason'].iloc[0]}): there is no model to export")
    first = of_curve.iloc[0]
    key = first["curve_key"]
    flipped = store.read_meta(key)["item"]["endpoint_1"] != first["endpoint_1"]  # a shared line stored the other way
    named_by = {"sweep": sweep, "cell_id": cell_id, "curve": curve, "cell_t": t,
                **{c: first[c] for c in ("setting", "method_1", "method_2", "endpoint_1", "endpoint_2")}}
    target = _artifact(store, key, 1.0 - t if flipped else t, named_by)
    curve_t = target.named_by["curve_t"]  # snapped to an evaluated point
    return replace(target, named_by={**target.named_by, "cell_t": 1.0 - curve_t if flipped else curve_t})


# ----------------------------------------------------------------------------- the model


def model_at(store: Store, target: Target, placement: Placement) -> nn.Module:
    """The task's model holding the target's weights, on ``placement`` (as evaluation loads it)."""
    item = target.meta["item"]
    task = TASKS[item["task"]]
    model = task.new_model(options_from_dict(item["task"], item["options"]), seed=0, placement=placement)
    if target.t is None:
        return load_state(model, store.load_weights(target.key))
    curve = item_from_dict("curve", item)
    load_point(model, [placement.tensors(cp) for cp in control_points(store, curve)], target.t, blend(curve))
    if isinstance(task, ClassificationTask):  # what its evaluation does first at every point
        _, data = task_data(curve.task, curve.options, curve.ratio)
        recompute_batchnorm(model, data.split("retain"), placement, task.logits)
    return model


def standalone(model: nn.Module) -> nn.Module:
    """A LoRA model with its adapters merged into the base (a plain transformers model); others as they are."""
    from peft import PeftModel

    return model.merge_and_unload() if isinstance(model, PeftModel) else model


def preprocessors(task: str, options) -> list:
    """What turns raw inputs into the model's: its tokenizer and (images) an image processor."""
    from mcu_ray.tasks import TASKS, mubench, tofu

    if task == "tofu":
        return [tofu.tokenizer_for(options)]
    if not isinstance(TASKS[task], mubench.MUBenchTask):
        return []
    modality = TASKS[task].modality
    found = [tok] if (tok := mubench.tokenizer_for(modality, options)) is not None else []
    if mubench.input_columns(modality, options)[0]:
        found.append(image_processor(options.image_size))
    return found


def image_processor(size: int):
    """mubench's ``_pixels`` as an image processor: RGB, PIL bicubic resize to size x size (PIL's
    default), scaled to [0, 1], normalised with ImageNet's mean and std (the PIL backend equals it)."""
    from PIL import Image
    from transformers import ViTImageProcessorPil

    from mcu_ray.tasks.mubench import IMAGENET_MEAN, IMAGENET_STD

    return ViTImageProcessorPil(do_resize=True, size={"height": size, "width": size}, resample=Image.BICUBIC,
                                do_rescale=True, rescale_factor=1 / 255, do_convert_rgb=True, do_normalize=True,
                                image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))


# ----------------------------------------------------------------------------- the folder


def check_out_dir(out_dir: str) -> None:
    if os.path.exists(out_dir) and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise SpecError("OUT_DIR", out_dir, "expected a new or empty folder (an export never overwrites)")


def export(storage: str, name: str, out_dir: str, t: float | None = None, curve: str | None = None,
           device: str = "cpu") -> Target:
    """Write the model point ``name`` / ``t`` / ``curve`` of ``storage`` into ``out_dir`` (see the module doc)."""
    check_out_dir(out_dir)
    store = Store(storage)
    target = resolve(store, name, t, curve)
    item = target.meta["item"]
    model = standalone(model_at(store, target, Placement(device, item["precision"]))).cpu().eval()
    os.makedirs(out_dir, exist_ok=True)
    transformers_model = hasattr(model, "save_pretrained")
    if transformers_model:
        model.save_pretrained(out_dir)
        for preprocessor in preprocessors(item["task"], options_from_dict(item["task"], item["options"])):
            preprocessor.save_pretrained(out_dir)
    else:
        wrapper = Classifier(item["task"], item["options"])
        wrapper.net = model
        wrapper.save_pretrained(out_dir)
    facts = summary(store, target, name)
    with open(os.path.join(out_dir, "mcu_ray.json"), "w", encoding="utf-8") as out:
        json.dump(facts, out, indent=1, sort_keys=True, default=str)
    with open(os.path.join(out_dir, "README.md"), "w", encoding="utf-8") as out:  # replaces the mixin's stub
        out.write(model_card(facts, transformers_model))
    return target


def summary(store: Store, target: Target, name: str) -> dict:
    """What the model card shows, as JSON: the artifact's meta.json; for a curve point its endpoints' and bend's too."""
    meta, item = target.meta, target.meta["item"]
    facts = {"exported_by": f"mcu_ray {__version__}", "storage": store.uri, "asked_for": name, "key": target.key,
             "kind": "curve_point" if target.t is not None else meta["kind"], "t": target.t,
             "named_by": target.named_by, "item": item, "metrics": target.metrics,
             "meta": {k: v for k, v in meta.items() if k not in ("item", "metrics")}}
    if meta["kind"] == "original":  # evaluated once per forget ratio, beside its retrained model
        facts["metrics_by_ratio"] = original_metrics(store, target.key)
    if target.t is not None:
        curve = item_from_dict("curve", item)
        ends = {k: store.read_meta(k) for k in (curve.endpoint_1, curve.endpoint_2)}
        facts["endpoints"] = [{"key": k, "item": m["item"], "metrics": m.get("metrics")} for k, m in ends.items()]
        if curve.trained:
            bend = store.read_meta(bend_key(curve))
            facts["bend"] = {k: v for k, v in bend.items() if k != "item"}
    return facts


def original_metrics(store: Store, key: str) -> dict:
    """The references table's rows of an original model, per forget ratio, from every sweep of the store."""
    from mcu_ray.tables import read_table

    found = {}
    for sweep in store.folders():
        rows = read_table(store, sweep, "references").to_pandas()
        for _, row in rows[rows["key"] == key].iterrows():
            metrics = TASKS[row["task"]].metric_directions
            found[f"{row['ratio']:g}"] = {m: float(row[m]) for m in metrics if m in row and np.isfinite(row[m])}
    return found


# ----------------------------------------------------------------------------- command line


def _t(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value!r}") from None


def main(argv=None, prog: str = "python -m mcu_ray.export") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("storage", metavar="STORAGE",
                        help="the storage root (a path or pyarrow.fs URI), as the sweep's --storage")
    parser.add_argument("key_or_cell", metavar="KEY_OR_CELL",
                        help="an artifact key (orig-, retrain-, ep-, curve-) or a cell_id of a results table")
    parser.add_argument("out_dir", metavar="OUT_DIR", help="a new or empty folder for the Hugging Face files")
    parser.add_argument("--t", type=_t, help="the point of a curve or cell, in [0, 1]")
    parser.add_argument("--curve", help="a cell's curve: linear | bezier | polychain (needed when it has several)")
    parser.add_argument("--device", default="cpu", help="where phi(t) is built and BatchNorm re-estimated (default: "
                                                        "cpu); the files are CPU tensors either way")
    args = parser.parse_args(argv)
    try:
        try:
            torch.device(args.device)
        except RuntimeError:
            raise SpecError("--device", args.device, "expected a torch device: cpu, cuda, cuda:1, ...") from None
        target = export(args.storage, args.key_or_cell, args.out_dir, args.t, args.curve, args.device)
    except SpecError as err:
        parser.error(str(err))
    where = f" at t = {target.t:g}" if target.t is not None else ""
    print(f"{args.out_dir}: {target.key}{where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
