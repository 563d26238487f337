"""Export: stored models and curve points written as Hugging Face folders and loaded back elsewhere.

The artifacts are built by the real builders (``mcu_ray.jobs``) at the smallest sizes the task tests
use; the exported folders are loaded with ``from_pretrained`` (TOFU: in a fresh Python process) and
evaluated again, which must give the numbers the store holds. No Ray.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from mcu_ray import jobs
from mcu_ray.cli import main as cli_main
from mcu_ray.curves import load_point
from mcu_ray.export import Classifier, export, image_processor, main, standalone
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.store import Store
from mcu_ray.tables import write_table
from mcu_ray.tasks import TASKS
from tests.helpers import REPO, build_models

# tests/tasks/test_tofu.py's TOFU: its smallest whose Model Utility is above 0 (so that the check means something)
TOFU_OPTIONS = {"synthetic_authors": 10, "eval_size": 20, "n_embd": 64, "n_layer": 2, "vocab_size": 800, "epochs": 30,
                "max_new_tokens": 24}


# ----------------------------------------------------------------------------- TOFU


@pytest.fixture(scope="module")
def tofu(tmp_path_factory):
    plan = make_plan(parse_spec({"name": "t", "settings": ["Rand"], "points": 3, "tasks": [{
        "name": "tofu", "ratios": [10], "methods": ["npo"], "options": TOFU_OPTIONS,
        "hparams": {"npo": {"epochs": 1}}}]}))
    store = Store(str(tmp_path_factory.mktemp("tofu_store")))
    build_models(store, plan)
    return plan, store


# Runs in a fresh interpreter: nothing of the exporting process (its cached tokenizer, its models) is there.
EVALUATE_EXPORTED = """
import json, sys
from transformers import AutoModelForCausalLM, AutoTokenizer
from mcu_ray.placement import Placement
from mcu_ray.tasks.tofu import TASK, TofuData, retrained_context

folder, reference, ratio = sys.argv[1], sys.argv[2], float(sys.argv[4])
options = TASK.Options(**json.loads(sys.argv[3]))
tokenizer = AutoTokenizer.from_pretrained(folder)
rows = TASK.load(options, ratio).rows  # the same questions and answers, encoded by the exported tokenizer
data, placement = TofuData(tokenizer, options, rows), Placement("cpu")
model = AutoModelForCausalLM.from_pretrained(folder)
retrained = AutoModelForCausalLM.from_pretrained(reference)  # Forget Quality's and PrivLeak's reference, exported too
context = retrained_context(retrained, data, placement)
print(json.dumps({"tokenizer": type(tokenizer).__name__, "model": type(model).__name__,
                  "metrics": TASK.evaluate(model, options, data, context, placement)}))
"""


def test_an_exported_tofu_endpoint_gives_its_stored_metrics_in_a_fresh_process(tofu, tmp_path):
    plan, store = tofu
    endpoint = next(iter(plan.endpoints.values()))
    out, reference = tmp_path / "endpoint", tmp_path / "retrained"
    export(store.uri, endpoint.key, str(out))
    export(store.uri, endpoint.retrained, str(reference))
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "mcu_ray.json"} <= set(os.listdir(out))
    run = subprocess.run([sys.executable, "-c", EVALUATE_EXPORTED, str(out), str(reference),
                          json.dumps(dataclasses.asdict(endpoint.options)), str(endpoint.ratio)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["model"] == "GPT2LMHeadModel"
    stored = store.read_meta(endpoint.key)["metrics"]
    assert stored["model_utility"] > 0 and stored["forget_quality"] > 0 and stored["rouge_retain"] > 0
    assert set(found["metrics"]) == set(stored)
    for name in ("forget_quality", "model_utility", "rouge_forget", "rouge_retain", "rouge_real_authors",
                 "rouge_world_facts", *stored):
        assert found["metrics"][name] == pytest.approx(stored[name], rel=1e-5, abs=1e-7), name


def test_the_exported_tokenizer_encodes_and_decodes_as_the_task_does(tofu, tmp_path):
    from transformers import AutoTokenizer

    from mcu_ray.tasks.tofu import tokenizer_for

    plan, store = tofu
    endpoint = next(iter(plan.endpoints.values()))
    export(store.uri, endpoint.key, str(tmp_path / "e"))
    mine, loaded = tokenizer_for(endpoint.options), AutoTokenizer.from_pretrained(str(tmp_path / "e"))
    data = jobs.task_data("tofu", endpoint.options, endpoint.ratio)[1]
    texts = [f"Question: {r['question']}\nAnswer: {r['answer']}" for r in data.rows.forget_eval + data.rows.retain_eval]
    assert [loaded(t, add_special_tokens=False)["input_ids"] for t in texts] == \
           [mine(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert (loaded.eos_token_id, loaded.pad_token_id, len(loaded)) == (mine.eos_token_id, mine.pad_token_id, len(mine))
    ids = mine(texts[0], add_special_tokens=False)["input_ids"]
    assert loaded.decode(ids) == mine.decode(ids) == texts[0]


def test_the_model_card_records_what_the_artifact_does(tofu, tmp_path):
    plan, store = tofu
    endpoint = next(iter(plan.endpoints.values()))
    export(store.uri, endpoint.key, str(tmp_path / "e"))
    card = (tmp_path / "e" / "README.md").read_text()
    meta = store.read_meta(endpoint.key)
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-generation\n")
    assert "# tofu endpoint: NPO (fo, none), seed 0, forget 10 %" in card
    assert "AutoModelForCausalLM.from_pretrained" in card
    fq = meta["metrics"]["forget_quality"]
    assert f"| forget_quality | {fq:.6g} | ↑ |" in card and "| rouge_forget |" in card
    assert f"| effective batch | {meta['effective_batch']} |" in card and "## Training log" in card
    facts = json.loads((tmp_path / "e" / "mcu_ray.json").read_text())
    assert facts["metrics"] == meta["metrics"] and facts["item"] == meta["item"]


def test_provenance_recorded_by_an_artifact_goes_into_its_card(tofu, tmp_path):
    plan, store = tofu
    endpoint = next(iter(plan.endpoints.values()))
    meta = store.read_meta(endpoint.key)
    meta["provenance"] = {"git_commit": "0123abc", "torch": torch.__version__}
    store.write_bytes(json.dumps(meta).encode(), "artifacts", endpoint.key, "meta.json")
    export(store.uri, endpoint.key, str(tmp_path / "e"))
    card = (tmp_path / "e" / "README.md").read_text()
    assert "## Provenance" in card and "| git_commit | 0123abc |" in card


def test_a_lora_point_is_exported_merged_into_its_base(tmp_path):
    """phi(t) of three LoRA control points (an adapter of three times the rank) merged into the base:
    a plain transformers model giving the same logits."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    task = TASKS["tofu"]
    options = task.Options(**TOFU_OPTIONS, lora_rank=2)
    model = task.new_model(options, seed=0)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    points = [{n: 0.2 * torch.randn_like(dict(model.named_parameters())[n]) for n in names} for _ in range(3)]
    load_point(model.eval(), points, 0.3)
    assert {p.shape[0] for n, p in model.named_parameters() if ".lora_A." in n} == {3 * 2}  # ranks stacked
    batch = torch.randint(3, 300, (2, 12))
    with torch.no_grad():
        expected = model(input_ids=batch).logits
    merged = standalone(model)
    merged.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == "GPT2LMHeadModel" and not any("lora" in n for n, _ in loaded.named_parameters())
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=batch).logits, expected, atol=1e-5)


# ----------------------------------------------------------------------------- digits curve points


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    plan = make_plan(parse_spec({"name": "d", "settings": ["Rand"], "points": 4, "curves": ["linear", "bezier"],
                                 "tasks": [{"name": "digits", "ratios": [5], "methods": ["ga"],
                                            "options": {"epochs": 3, "width": 4}, "hparams": {"ga": {"epochs": 1}},
                                            "curve_fit": {"epochs": 1}}]}))
    store = Store(str(tmp_path_factory.mktemp("digits_store")))
    build_models(store, plan, plan.curves.values())
    return plan, store


def _split_metrics(model, split: dict) -> tuple[float, float]:
    """Accuracy and mean cross-entropy of ``model`` as it is (no BatchNorm re-estimation)."""
    with torch.no_grad():
        logits = model(split["x"])
    return float((logits.argmax(-1) == split["y"]).float().mean()), float(F.cross_entropy(logits, split["y"]))


def test_an_exported_digits_curve_point_gives_the_stored_rows_numbers(digits, tmp_path):
    plan, store = digits
    cell = plan.cells[0]
    curve = plan.curves[dict(cell.curves)["bezier"]]
    assert main([store.uri, curve.key, "--t", "0.333333", str(tmp_path / "p")]) == 0  # 1/3 as the table rounds it
    stored = next(r for r in store.load_points(curve.key).to_pylist() if abs(r["t"] - 1 / 3) < 1e-9)
    model = Classifier.from_pretrained(str(tmp_path / "p")).eval()
    data = jobs.task_data("digits", curve.options, curve.ratio)[1]
    for split in ("test", "retain", "forget"):
        accuracy, loss = _split_metrics(model, data.split(split))
        assert accuracy == pytest.approx(stored[f"acc_{split}"], abs=1e-9), split
        if split != "test":
            assert loss == pytest.approx(stored[f"loss_{split}"], rel=1e-4), split
    facts = json.loads((tmp_path / "p" / "mcu_ray.json").read_text())
    assert facts["kind"] == "curve_point" and facts["t"] == stored["t"] and facts["metrics"]["zrf"] == stored["zrf"]
    assert "φ(0.333333) on the bezier curve" in (tmp_path / "p" / "README.md").read_text()


def test_a_cell_point_follows_the_results_tables_orientation(digits, tmp_path):
    """A cell whose endpoint_1 is its shared line's second endpoint: its t is 1 - the line's t."""
    plan, store = digits
    line = next(c for c in plan.curves.values() if c.kind == "linear")
    ident = {"cell_id": "cell-flipped", "task": "digits", "setting": "Rand", "method_1": "ga", "method_2": "ga",
             "endpoint_1": line.endpoint_2, "endpoint_2": line.endpoint_1, "curve": "linear", "curve_key": line.key,
             "status": "ok"}
    write_table(store, "d", "results", [{**ident, "t": t} for t in (0.0, 1 / 3, 2 / 3, 1.0)], key="cell-flipped")
    export(store.uri, "cell-flipped", str(tmp_path / "cell"), t=1 / 3)
    export(store.uri, line.key, str(tmp_path / "curve"), t=2 / 3)
    a, b = (load_file(tmp_path / d / "model.safetensors") for d in ("cell", "curve"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    facts = json.loads((tmp_path / "cell" / "mcu_ray.json").read_text())
    assert facts["named_by"]["cell_t"] == pytest.approx(1 / 3) and facts["t"] == pytest.approx(2 / 3)
    export(store.uri, "cell-flipped", str(tmp_path / "end"), t=1e-7)  # t = 0: the cell's endpoint_1 itself
    assert json.loads((tmp_path / "end" / "mcu_ray.json").read_text())["key"] == line.endpoint_2


def test_an_originals_card_gives_its_rows_of_the_references_table(digits, tmp_path):
    plan, store = digits
    original, reference = next(iter(plan.originals.values())), next(iter(plan.retrained.values()))
    metrics = jobs.original_metrics(store, original, reference)
    write_table(store, "d", "references", [{"task": "digits", "ratio": reference.ratio, "model": "original",
                                            "key": original.key, **metrics}], key="refs")
    export(store.uri, original.key, str(tmp_path / "o"))
    card = (tmp_path / "o" / "README.md").read_text()
    assert "# digits original model" in card and "At forget ratio 5 % (the references table):" in card
    assert f"| acc_forget | {metrics['acc_forget']:.6g} | ↓ |" in card
    assert "library_name: mcu_ray" in card and "Classifier.from_pretrained" in card


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args,words", [
    (["ep-nope"], "KEY_OR_CELL: got 'ep-nope'; expected an artifact key"),
    (["{curve}", "--t", "1.5"], "--t: got 1.5; expected a number in [0, 1]"),
    (["{curve}", "--t", "abc"], "argument --t: expected a number in [0, 1], got 'abc'"),
    (["{curve}"], "--t: missing; curve-"),
    (["{endpoint}", "--t", "0.5"], "is one model (an endpoint), not a curve"),
    (["{bend}", "--t", "0.5"], "a bend artifact is not a model"),
    (["{endpoint}", "--curve", "linear"], "--curve: got 'linear'; only with a cell id"),
    (["{cell}", "--t", "0.5"], "--curve: missing; cell cell-two has the curves linear, bezier"),
    (["{cell}", "--curve", "bezier"], "--t: missing; a cell is a curve"),
    (["{endpoint}", "--device", "tpu9"], "--device: got 'tpu9'"),
])
def test_bad_input_exits_2_naming_the_argument(digits, tmp_path, capsys, args, words):
    plan, store = digits
    curve = next(c for c in plan.curves.values() if c.trained)
    rows = [{"cell_id": "cell-two", "curve": kind, "curve_key": key, "status": "ok", "t": 0.0}
            for kind, key in plan.cells[0].curves]
    write_table(store, "d", "results", rows, key="cell-two")
    keys = {"curve": curve.key, "endpoint": curve.endpoint_1, "bend": jobs.bend_key(curve), "cell": "cell-two"}
    with pytest.raises(SystemExit) as exit_:
        main([store.uri, *[a.format(**keys) for a in args], str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_non_empty_out_dir_is_refused(digits, tmp_path, capsys):
    plan, store = digits
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        main([store.uri, next(iter(plan.endpoints)), str(tmp_path / "out")])
    assert exit_.value.code == 2 and "OUT_DIR: got" in capsys.readouterr().err
    assert os.listdir(tmp_path / "out") == ["notes.txt"]


def test_mcu_ray_export_is_a_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["export", "--help"])
    assert exit_.value.code == 0 and "usage: mcu-ray export" in capsys.readouterr().out


# ----------------------------------------------------------------------------- image inputs


def test_the_image_processor_preprocesses_as_mubench_does(tmp_path):
    """MU-Bench's pixels (``mubench._pixels``: RGB, PIL resize, ImageNet normalisation) from the saved
    processor, loaded back with its PIL backend; a greyscale image of another size included."""
    from PIL import Image
    from transformers import AutoImageProcessor

    from mcu_ray.tasks.mubench import _pixels

    image_processor(32).save_pretrained(tmp_path)
    loaded = AutoImageProcessor.from_pretrained(tmp_path, backend="pil")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (45, 37, 3), dtype=np.uint8)),
              Image.fromarray(rng.integers(0, 256, (20, 20), dtype=np.uint8))]
    got = torch.from_numpy(np.asarray(loaded(images, return_tensors="np")["pixel_values"]))
    assert torch.allclose(got, _pixels(images, 32), atol=1e-6)
