"""The README.md of an exported model: what it is, how it was made and measured, how to load it.

A Hugging Face model card (YAML metadata, then Markdown) drawn from the facts ``export.summary``
gathers from the artifact's meta.json: kind, task, method, hyper-parameters, seed, forget ratio,
precision, device, training log, metrics with their directions, and ``meta["provenance"]`` where the
artifact records one. The same facts sit beside it, machine-readable, in ``mcu_ray.json``.
"""
from __future__ import annotations

import json

from mcu_ray.metrics import METRICS
from mcu_ray.tasks import TASKS

PIPELINES = {"tofu": "text-generation", "digits": "image-classification", "cifar10": "image-classification",
             "ddi": "text-classification", "nlvr2": "visual-question-answering"}

FOLDER = '"path/to/this/folder"'
LOAD = {  # task -> how to load the folder and feed it inputs as mcu_ray does
    "tofu": f"""from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained({FOLDER})
tokenizer = AutoTokenizer.from_pretrained({FOLDER})
prompt = {{question_template!r}}.format(question="...")  # answers follow {{answer_template!r}}
ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
answer = model.generate(ids, max_new_tokens={{max_new_tokens}}, do_sample=False)  # greedy, as for ROUGE""",
    "digits": f"""from mcu_ray.export import Classifier  # the network is mcu_ray's own, not a transformers class

model = Classifier.from_pretrained({FOLDER}).eval()
logits = model(x)  # x: (batch, 1, 8, 8) images scaled to [0, 1] (scikit-learn's digits / 16)""",
    "cifar10": f"""from transformers import AutoImageProcessor, AutoModelForImageClassification

model = AutoModelForImageClassification.from_pretrained({FOLDER}).eval()
processor = AutoImageProcessor.from_pretrained({FOLDER}, backend="pil")  # "pil": exactly mcu_ray's resizing
logits = model(**processor(images, return_tensors="pt")).logits""",
    "ddi": f"""from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained({FOLDER}).eval()
tokenizer = AutoTokenizer.from_pretrained({FOLDER})
inputs = tokenizer(sentences, padding="max_length", truncation=True, max_length={{max_length}}, return_tensors="pt")
logits = model(**inputs).logits""",
    "nlvr2": f"""import torch
from transformers import AutoImageProcessor, AutoTokenizer, ViltForImagesAndTextClassification

model = ViltForImagesAndTextClassification.from_pretrained({FOLDER}).eval()
tokenizer = AutoTokenizer.from_pretrained({FOLDER})
processor = AutoImageProcessor.from_pretrained({FOLDER}, backend="pil")
text = tokenizer(sentences, padding="max_length", truncation=True, max_length={{max_length}}, return_tensors="pt")
pixels = torch.stack([processor(left, return_tensors="pt").pixel_values,
                      processor(right, return_tensors="pt").pixel_values], dim=1)  # (batch, 2, 3, H, W)
logits = model(input_ids=text.input_ids, attention_mask=text.attention_mask, pixel_values=pixels).logits""",
}


def _value(value) -> str:
    """A table cell: numbers short, structures as compact JSON, '|' escaped."""
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (dict, list, tuple)):
        text = f"`{json.dumps(value, sort_keys=True, default=str)}`"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(rows, head=("field", "value")) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_value(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _describe(item: dict) -> str:
    """An endpoint in words: ``NPO (fo, none), seed 0``."""
    return f"{item['method'].upper()} ({item['optimizer']}, {item['curriculum']}), seed {item['seed']}"


def title(facts: dict) -> str:
    item, kind = facts["item"], facts["kind"]
    ratio = f", forget {item['ratio']:g} %" if "ratio" in item else ""
    if kind == "endpoint":
        return f"{item['task']} endpoint: {_describe(item)}{ratio}"
    if kind == "curve_point":
        ends = " → ".join(_describe(e["item"]) for e in facts["endpoints"])
        return f"{item['task']}: φ({facts['t']:.6g}) on the {item['kind']} curve {ends}{ratio}"
    return f"{item['task']} {kind} model{ratio}"


def what_it_is(facts: dict) -> list[tuple]:
    """(field, value) rows that say which model this is."""
    item, meta = facts["item"], facts["meta"]
    rows = [("kind", facts["kind"]), ("task", item["task"]), ("artifact key", facts["key"])]
    if facts["t"] is not None:
        rows += [("t", facts["t"]), ("curve", item["kind"]), ("trained bends", item["bends"]),
                 ("length in parameter space", meta.get("length"))]
        rows += [(f"endpoint {i} (t = {i - 1})", f"{e['key']}: {_describe(e['item'])}, hyper-parameters "
                                                 f"{json.dumps(e['item']['hparams'], sort_keys=True)}")
                 for i, e in enumerate(facts["endpoints"], 1)]
        if item["bends"]:
            rows += [("bend objective", item["objective"]), ("bend optimiser", item["optimizer"]),
                     ("bend curriculum", item["curriculum"]), ("bend fit", item["fit"]), ("bend seed", item["seed"])]
    else:
        rows += [(name, item[field]) for name, field in (
            ("method", "method"), ("hyper-parameters", "hparams"), ("optimiser", "optimizer"),
            ("optimiser knobs", "optimizer_params"), ("curriculum", "curriculum"),
            ("curriculum knobs", "curriculum_params"), ("seed", "seed"), ("unlearned from", "original"),
            ("evaluated against", "retrained"), ("pathway source", "source")) if item.get(field) not in (None, "")]
    if "ratio" in item:
        rows.append(("forget ratio (%)", item["ratio"]))
    rows += [("precision", item["precision"]), ("task options", item["options"])]
    if "pathway" in meta:
        rows.append(("pathway t*", meta["pathway"]["t_star"]))
    named = facts["named_by"]
    if "cell_id" in named:
        rows.append(("named by", f"cell {named['cell_id']} of sweep {named['sweep']} ({named['setting']}, "
                                 f"{named['method_1']} → {named['method_2']}), {named['curve']} curve at t = "
                                 f"{named['cell_t']:.6g} of the results table"))
    elif "curve_key" in named and facts["t"] is None:
        rows.append(("named by", f"t = {named['curve_t']:g} of curve {named['curve_key']}"))
    return rows


def how_computed(meta: dict) -> list[tuple]:
    fields = (("device", "device"), ("precision", "precision"), ("data-parallel workers", "workers"),
              ("gradient accumulation", "grad_accum"), ("effective batch", "effective_batch"),
              ("training seconds", "train_seconds"), ("mcu_ray version", "code_version"))
    return [(name, meta[key]) for name, key in fields if key in meta]


def metric_rows(task: str, metrics: dict) -> list[tuple]:
    """(name, value, ↑/↓, definition) of each metric, from the registry (``mcu_ray.metrics``)."""
    arrows = {+1: "↑", -1: "↓"}
    return [(m, v, arrows[METRICS[m].sign], METRICS[m].definition) if m in METRICS else (m, v, "", "")
            for m, v in metrics.items()]


def model_card(facts: dict, transformers_model: bool) -> str:
    """README.md of an exported folder (``facts``: ``export.summary``)."""
    item, meta, task = facts["item"], facts["meta"], facts["item"]["task"]
    tags = ["mcu_ray", "machine-unlearning", "mode-connectivity", task]
    lines = ["---", f"library_name: {'transformers' if transformers_model else 'mcu_ray'}"]
    if task in PIPELINES:
        lines.append(f"pipeline_tag: {PIPELINES[task]}")
    lines += ["tags:", *(f"- {t}" for t in tags), "---", "", f"# {title(facts)}", "",
              f"Exported by {facts['exported_by']} (`python -m mcu_ray.export`) from the store `{facts['storage']}`, "
              f"asked for as `{facts['asked_for']}`" + (f" at t = {facts['t']:.6g}" if facts["t"] is not None else "")
              + ". Every fact below is also in `mcu_ray.json`, beside this card.", "",
              "## Load it", "", "```python", LOAD.get(task, "").format(**item["options"]), "```", ""]
    if task == "tofu" and item["options"].get("lora_rank"):
        lines += ["Trained as LoRA adapters over a frozen base; exported with the adapters merged into the base "
                  "weights (peft's `merge_and_unload`), so it loads as a plain model.", ""]
    if facts["t"] is not None:
        classifier = task in TASKS and TASKS[task].family == "classification"
        lines += ["A point of a curve between two unlearned models: φ(t) = Σ_k c_k(t) θ_k over the curve's control "
                  "points (its endpoints and trained bends), built as mcu_ray evaluates it"
                  + ("; BatchNorm statistics (where the network has any) re-estimated on the forget ratio's retain "
                     "set Dr." if classifier else "."), ""]
    computed = facts.get("bend", meta)  # a curve point: how its bends were trained
    lines += ["## What it is", "", _table(what_it_is(facts)),
              "## How it was computed" + (" (the curve's bends)" if "bend" in facts else ""), "",
              _table(how_computed(computed))]
    lines += ["## Metrics", ""]
    if facts["metrics"]:
        lines += ["As mcu_ray evaluated this model (its task's evaluation splits at this forget ratio, relative to "
                  "the retrained model where a metric needs one); ↑ / ↓: higher / lower is better after unlearning.",
                  "", _table(metric_rows(task, facts["metrics"]), ("metric", "value", "direction", "meaning"))]
    for ratio, metrics in facts.get("metrics_by_ratio", {}).items():
        lines += [f"At forget ratio {ratio} % (the references table):", "",
                  _table(metric_rows(task, metrics), ("metric", "value", "direction", "meaning"))]
    if facts["kind"] == "original" and not facts.get("metrics_by_ratio"):
        lines += ["An original is evaluated once per forget ratio, in a sweep's references table; no sweep of this "
                  "store holds a row of it.", ""]
    elif not facts["metrics"] and facts["kind"] != "original":
        lines += ["No evaluation of this point is stored: a curve is evaluated at t = i / (points - 1) only.", ""]
    provenance = meta.get("provenance") or computed.get("provenance")
    if provenance:
        lines += ["## Provenance", "", _table(sorted(provenance.items()) if isinstance(provenance, dict)
                                              else [("provenance", provenance)])]
    log = computed.get("train_log")
    if log is not None:
        lines += ["## Training log" + (" (of the curve's bends)" if "bend" in facts else ""), "", "```json",
                  json.dumps(log, indent=1, sort_keys=True, default=str), "```", ""]
    return "\n".join(lines)
