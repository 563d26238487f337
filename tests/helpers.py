"""What several test modules build the same way: small sweep files, a hub-layout dataset folder (and a
MU-Bench task run end to end on it), a curve's control points, and where the repository and the shared
test data are.

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


MUBENCH_METRICS = {"acc_test", "acc_retain", "acc_forget", "zrf", "loss_retain", "loss_forget", "mia_efficacy",
                   "mia_loss"}


def mubench_end_to_end(tmp_path: Path, name: str):
    """A MU-Bench task from a hub-layout folder through its whole grid on the CPU: the original trained, the
    retrained model and an RL endpoint built on a 10 % MU-Bench-style forget list, then a curve between two
    endpoints evaluated. Checks what every MU-Bench task shares (every metric finite, the forget set the
    listed rows, one row per interior t) and returns the task's data for the task's own checks."""
    import torch

    from mcu_ray import jobs
    from mcu_ray.plan import make_plan
    from mcu_ray.spec import parse_spec

    torch.set_num_threads(1)
    folder = write_hub_folder(tmp_path, name)
    index_file = tmp_path / "forget.txt"
    index_file.write_text("\n".join(str(i) for i in (3, 7, 11, 19, 23)) + "\n")  # 10 % of 48 rows, MU-Bench style
    spec = parse_spec({"name": "m", "settings": ["Rand"], "tasks": [{
        "name": name, "ratios": [10], "methods": ["rl"],
        "options": {"dataset": str(folder), "forget_index_file": str(index_file), "image_size": 16,
                    "max_length": 12, "vocab_size": 300, "hidden_size": 16, "epochs": 2, "batch_size": 16},
        "hparams": {"rl": {"epochs": 1, "lr": 1e-3}}}]})
    plan = make_plan(spec)
    store = jobs.Store(str(tmp_path / "store"))
    jobs.build_original(store, next(iter(plan.originals.values())))
    retrained = jobs.build_retrained(store, next(iter(plan.retrained.values())))
    endpoint = jobs.build_endpoint(store, next(iter(plan.endpoints.values())))
    for metrics in (retrained["metrics"], endpoint["metrics"]):
        assert set(metrics) == MUBENCH_METRICS
        assert all(np.isfinite(v) for v in metrics.values())
    _, data = jobs.task_data(name, spec.tasks[0].options, 10)
    assert data.forget_idx.tolist() == [3, 7, 11, 19, 23]
    curve = next(c for c in plan.curves.values() if not c.trained)
    for key in (curve.endpoint_1, curve.endpoint_2):
        if not store.has_artifact(key):
            jobs.build_endpoint(store, plan.endpoints[key])
    assert len(jobs.evaluate_curve_serially(store, curve)) == spec.points - 2
    return data


def random_control_points(task, options) -> list[dict]:
    """Three differently initialised networks of a task as a curve's control points (a Bezier curve)."""
    from mcu_ray.curves import curve_parameters

    models = [task.new_model(options, seed=s) for s in (1, 2, 3)]
    names = curve_parameters(models[0])
    return [{n: dict(m.named_parameters())[n].detach() for n in names} for m in models]


# ----------------------------------------------------------------------------- a report's synthetic sweep
# Two settings (Rand: same-method pairs, Met: ordered pairs), two forget ratios, two method pairs each and one
# failed cell. Linear curves follow the chord exactly (MCU), Bezier curves bulge above it (a retain barrier of
# 3 nats). The barriers table holds deviations only; every verdict is decided when the report is drawn.
REPORT_SWEEP = "synthetic"
REPORT_SETTINGS = {"Rand": [("ga", "ga"), ("rl", "rl")], "Met": [("ga", "rl"), ("rl", "ga")]}
REPORT_RATIOS = (2.0, 10.0)
_FAILED_CELL = ("Met", ("rl", "ga"), 10.0)  # this cell failed: NaN metrics, status 'failed'
_T = np.linspace(0, 1, 16)
_DIRECTIONS = {"acc_test": +1, "acc_retain": +1, "acc_forget": -1, "zrf": +1, "loss_retain": -1, "loss_forget": +1}


def _curve_metrics(curve: str, failed: bool) -> dict:
    """Metrics along t: on the chord for a linear curve, a bump mid-way for a Bezier one."""
    if failed:
        return {m: np.full_like(_T, np.nan) for m in ("acc_test", "acc_retain", "acc_forget", "zrf",
                                                      "loss_retain", "loss_forget")}
    bump = 4 * _T * (1 - _T) if curve == "bezier" else np.zeros_like(_T)
    return {"acc_test": 0.9 - 0.3 * bump, "acc_retain": 0.95 - 0.3 * bump, "acc_forget": 0.6 + 0.1 * _T,
            "zrf": 0.5 + 0.1 * bump, "loss_retain": 0.2 + 0.1 * _T + 3 * bump, "loss_forget": 1.5 - 0.2 * _T}


def _identity(setting: str, pair: tuple, ratio: float) -> dict:
    return {"sweep": REPORT_SWEEP, "spec_hash": "abc123", "code_version": "0.1.0",
            "cell_id": f"cell-{setting}-{pair[0]}-{pair[1]}-{ratio:g}", "task": "digits", "setting": setting,
            "method_1": pair[0], "method_2": pair[1], "optimizer_1": "fo", "optimizer_2": "fo",
            "curriculum_1": "none", "curriculum_2": "none", "ratio": ratio, "seed": 0}


def _write_cell(store, setting: str, pair: tuple, ratio: float) -> None:
    from mcu_ray.barriers import summarise_metric
    from mcu_ray.tables import write_table

    failed = (setting, pair, ratio) == _FAILED_CELL
    status = "failed" if failed else "ok"
    ident = _identity(setting, pair, ratio)
    results, barriers = [], []
    for curve in ("linear", "bezier"):
        metrics = _curve_metrics(curve, failed)
        for i, t in enumerate(_T):
            results.append({**ident, "curve": curve, "curve_key": f"curve-{curve}", "t": float(t),
                            **{m: float(v[i]) for m, v in metrics.items()}, "status": status})
        for metric, values in metrics.items():
            summary = {} if failed else summarise_metric(metric, _T, values, _DIRECTIONS[metric]).__dict__
            barriers.append({**ident, "curve": curve, "curve_key": f"curve-{curve}", "metric": metric,
                             "deviation": summary.get("deviation", np.nan), "min": summary.get("minimum", np.nan),
                             "start": summary.get("start", np.nan), "end": summary.get("end", np.nan),
                             "status": status})
    write_table(store, REPORT_SWEEP, "results", results, key=ident["cell_id"])
    write_table(store, REPORT_SWEEP, "barriers", barriers, key=ident["cell_id"])


def _write_references(store) -> None:
    from mcu_ray.tables import write_table

    rows = [{"sweep": REPORT_SWEEP, "task": "digits", "ratio": ratio, "model": model, "key": f"{model}-{ratio:g}",
             "acc_test": 0.95, "acc_retain": 1.0, "acc_forget": 0.9 if model == "retrained" else 1.0, "zrf": 0.47,
             "loss_retain": 0.001, "loss_forget": 0.3 if model == "retrained" else 0.001}
            for ratio in REPORT_RATIOS for model in ("original", "retrained")]
    write_table(store, REPORT_SWEEP, "references", rows, key="refs")


PATHWAY_GAPS = {"original": 0.05, "source": 0.1, "pathway": 0.02, "retrained": 0.0}
PATHWAY_SOURCES = {("ga", "fo"): 1.0, ("rl", "fo"): 2.0, ("ga", "so"): 3.0}  # source, optimizer -> gap factor


def _write_pathway(store) -> None:
    """Pathway endpoints from GA, RL and GA with Sophia at both ratios and two seeds, beside the
    original, their source and the retrained model; every gap scaled per (ratio, source)."""
    from mcu_ray.tables import write_table

    for ratio in REPORT_RATIOS:
        for (source, optimizer), factor in PATHWAY_SOURCES.items():
            for seed in (0, 1):
                key = f"ep-pathway_{source}-{optimizer}-{ratio:g}-{seed}"
                ident = {"sweep": REPORT_SWEEP, "task": "digits", "ratio": ratio, "seed": seed,
                         "method": f"pathway_{source}", "source_method": source, "optimizer": optimizer, "curriculum": "none", "endpoint": key,
                         "t_star": 0.25 + 0.5 * seed}
                rows = [{**ident, "model": model, "t": float("nan"), "gap_to_retrained": gap * factor * ratio,
                         "acc_test": 0.9 - gap,
                         "acc_retain": 1.0 - gap, "acc_forget": 0.9 + gap, "zrf": 0.5, "loss_retain": gap,
                         "loss_forget": 0.3} for model, gap in PATHWAY_GAPS.items()]
                rows += [{**ident, "model": "curve", "t": t, "gap_to_retrained": abs(t - ident["t_star"]),
                          "acc_test": 0.9, "acc_retain": 1.0, "acc_forget": 0.9, "zrf": 0.5, "loss_retain": 0.0,
                          "loss_forget": 0.3} for t in (0.0, 0.5, 1.0)]
                write_table(store, REPORT_SWEEP, "pathway", rows, key=key)


def write_report_sweep(root: str) -> None:
    """The synthetic sweep's results, barriers, references and pathway tables, in a store at ``root``."""
    from mcu_ray.store import Store

    store = Store(root)
    for setting, pairs in REPORT_SETTINGS.items():
        for pair in pairs:
            for ratio in REPORT_RATIOS:
                _write_cell(store, setting, pair, ratio)
    _write_references(store)
    _write_pathway(store)


def build_models(store, plan, curves=()) -> None:
    """The plan's models and ``curves`` (bends fitted, points evaluated) through the real builders, without Ray."""
    import torch

    from mcu_ray import jobs
    from mcu_ray.curves import curve_length

    torch.set_num_threads(1)
    for build, items in ((jobs.build_original, plan.originals), (jobs.build_retrained, plan.retrained),
                         (jobs.build_endpoint, plan.endpoints)):
        for item in items.values():
            build(store, item)
    for curve in curves:
        if curve.trained:
            jobs.build_bend(store, curve)
        cps = jobs.control_points(store, curve)
        jobs.save_points(store, curve, jobs.evaluate_curve_serially(store, curve, cps=cps),
                         curve_length(cps, jobs.blend(curve)))


def refused(change, path: str, words: str):
    """The SpecError that ``good()`` with ``change`` (see ``mutate``) is refused with: it names ``path``
    first, then the value, then what is allowed (containing ``words``)."""
    import pytest

    from mcu_ray.errors import SpecError
    from mcu_ray.spec import parse_spec

    with pytest.raises(SpecError) as err:
        parse_spec(mutate(change))
    assert err.value.path == path
    message = str(err.value)
    assert message.startswith(path) and words in message
    return err.value
