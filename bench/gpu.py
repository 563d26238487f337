"""mcu_ray's GPU path on one device: training throughput, one TOFU curve point, and (--grid) a real grid.

  training    mcu_ray's own loops on phi-1.5's architecture (TOFU option model "tiny-phi" at 24 layers
              x 2048, 32 heads, a tokenizer trained on TOFU's text) over real TOFU at forget10:
              fine-tuning (train_supervised on D), GD unlearning (unlearn "gd") and a Bezier bend
              (fit_bends between the fine-tuned and the unlearned weights, objective "gd").
              Each: warm-up steps, then a fixed number of timed steps, CUDA synchronised around them.
              Reported: seconds/step, real (non-padding) tokens/s, padded/real tokens, and
              MFU = 6 x trainable parameters x real tokens/s / the device's bf16 dense peak.
  evaluation  TASK.evaluate of one model at forget10, eval_size 400 (forget 400, retain 400, real
              authors, world facts, every perturbed answer; greedy ROUGE at 64 new tokens), after the
              evaluation context (the retrained model's forget truth ratios) is built once.
  grid        (--grid) sweeps/gpu_smoke.yaml through the real CLI in a subprocess; wall time and the
              share of it spent outside any training or evaluation job, from the store's job ledger.

Targets (printed with the results): >= 40 % MFU counting real tokens only, <= 10 s per curve point
and <= 10 % of the grid's wall time outside training and evaluation, on one H100/H200.

    python bench/gpu.py --json-out bench/gpu.json            # on a GPU machine, ~2-5 min on an H100
    python bench/gpu.py --grid --json-out bench/gpu.json     # + the gpu_smoke grid (much longer)
    python bench/gpu.py --device cpu --tiny                  # seconds on a laptop: keeps the script alive

No Hugging Face hub access is needed: tiny-* models build from a config and train their tokenizer here.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: import this checkout's mcu_ray

from cli import TRAINING_KINDS, run_sweep_cli  # noqa: E402  (bench/, the script's own folder)
from mcu_ray.batches import grouped_order, row_lengths, select  # noqa: E402
from mcu_ray.methods import METHODS  # noqa: E402
from mcu_ray.pathway_curve import ReplacedSplits  # noqa: E402
from mcu_ray.placement import Placement, default_device  # noqa: E402
from mcu_ray.spec import CurveFitSpec  # noqa: E402
from mcu_ray.store import Store  # noqa: E402
from mcu_ray.tasks.tofu import TASK  # noqa: E402
from mcu_ray.train import fit_bends, train_supervised, unlearn  # noqa: E402

# bf16 dense tensor-core peak (FLOP/s) by a substring of torch.cuda.get_device_name(); first match wins
PEAK_BF16_FLOPS = (
    ("H100 PCIe", 756e12),  # the PCIe and NVL cards' peaks are lower than the SXM one
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200", 989e12),
    ("A100", 312e12),
    ("A10G", 125e12),
    ("L40S", 362e12),  # before "L4", which its name contains
    ("L40", 181e12),
    ("L4", 121e12),
)
TARGET_MFU = 0.40  # real tokens only, on H100/H200
TARGET_EVAL_SECONDS = 10.0  # per TOFU curve point, on one H100/H200
TARGET_OUTSIDE_SHARE = 0.10  # of the grid's wall time outside training and evaluation jobs
RATIO = 10  # forget10: TOFU's largest forget set (400 rows), the one evaluation is timed on

# The model and loop sizes of a real run, and of --tiny (a 2-core CPU runs it in seconds).
FULL = {"n_layer": 24, "n_embd": 2048, "n_head": 32, "vocab_size": 8000,  # phi-1.5's architecture
        "batch_size": 32, "eval_size": 400, "eval_batch_size": 128, "max_new_tokens": 64,
        "steps": 10, "warmup_steps": 2, "eval_points": 2}
TINY = {"n_layer": 1, "n_embd": 64, "n_head": 4, "vocab_size": 2000,
        "batch_size": 8, "eval_size": 8, "eval_batch_size": 32, "max_new_tokens": 16,
        "steps": 3, "warmup_steps": 1, "eval_points": 1}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--precision", choices=("fp32", "bf16-mixed", "bf16"),
                        help="mcu_ray Placement precision (default: bf16-mixed on CUDA, fp32 on CPU)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny-phi at n_layer 1, n_embd 64, vocab 2000, batch 8, 3 steps, eval_size 8, 16 new "
                             "tokens: a smoke run in seconds that keeps the script alive, not a measurement")
    parser.add_argument("--tofu-dir",
                        default=os.environ.get("MCU_TOFU_DIR") or str(REPO.parent / "shared" / "data" / "tofu"),
                        help="folder of TOFU's JSONL files (default: $MCU_TOFU_DIR, else ../shared/data/tofu "
                             "beside the repository)")
    parser.add_argument("--steps", type=int, help="timed steps per training loop (default 10; --tiny 3)")
    parser.add_argument("--warmup-steps", type=int, help="untimed steps before each loop (default 2; --tiny 1)")
    parser.add_argument("--batch-size", type=int,
                        help="forget (and retain) rows per step, as gpu_smoke.yaml (default 32; --tiny 8)")
    parser.add_argument("--eval-size", type=int, help="rows per evaluation split (default 400; --tiny 8)")
    parser.add_argument("--eval-batch-size", type=int,
                        help="evaluation batch (default 128, as gpu_smoke.yaml; --tiny 32)")
    parser.add_argument("--max-new-tokens", type=int, help="greedy ROUGE answer length (default 64; --tiny 16)")
    parser.add_argument("--eval-points", type=int,
                        help="curve points evaluated (default 2; --tiny 1): the first also tokenises the evaluation "
                             "sets, as an evaluation process does once, so the later ones give the time per point")
    parser.add_argument("--peak-tflops", type=float,
                        help="bf16 dense peak of this device in TFLOP/s, for a GPU missing from the table")
    parser.add_argument("--skip-training", action="store_true", help="skip the training-throughput table")
    parser.add_argument("--skip-eval", action="store_true", help="skip the evaluation table")
    parser.add_argument("--grid", action="store_true",
                        help="also run --spec through `python -m mcu_ray.sweep` in a subprocess (with --tiny: a "
                             "CPU-sized version of it)")
    parser.add_argument("--spec", default=str(REPO / "sweeps" / "gpu_smoke.yaml"),
                        help="sweep file of --grid (default sweeps/gpu_smoke.yaml); its TOFU path is set to "
                             "--tofu-dir")
    parser.add_argument("--keep", action="store_true", help="--grid: keep the temporary store; print where")
    parser.add_argument("--json-out", help="also write every number as JSON to this path")
    args = parser.parse_args(argv)
    defaults = TINY if args.tiny else FULL
    for key, value in defaults.items():  # flags left out take the run's size
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


# ----------------------------------------------------------------------------- setup


def tofu_dir(path: str) -> str:
    """The TOFU folder, absolute; exits with a clear message when it is missing."""
    folder = Path(path).expanduser().resolve()
    if not (folder / "full.jsonl").is_file():
        raise SystemExit(f"error: no TOFU data at {folder} (expected full.jsonl, forget10_perturbed.jsonl, ... "
                         f"as in the Hugging Face dataset locuslab/TOFU): pass --tofu-dir or set $MCU_TOFU_DIR")
    return str(folder)


def make_placement(args):
    """The one device and precision every loop and evaluation below runs on."""
    device = torch.device(args.device) if args.device else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no GPU here (a CPU build of torch, or no driver)")
    precision = args.precision or ("bf16-mixed" if device.type == "cuda" else "fp32")
    return Placement(device=device, precision=precision)


def task_options(args, folder: str):
    """TOFU options of the benchmarked model: phi-1.5's architecture (or --tiny's) on real TOFU."""
    options = TASK.Options(source="local", path=folder, model="tiny-phi", n_layer=args.n_layer, n_embd=args.n_embd,
                           n_head=args.n_head, vocab_size=args.vocab_size, max_length=128,
                           eval_size=args.eval_size, eval_batch_size=args.eval_batch_size,
                           max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, lr=1e-4)
    options.check("options")
    return options


def device_info(placement, peak_tflops: float | None) -> dict:
    """The device's name and its bf16 dense peak (None on a CPU or an unknown GPU: MFU is then n/a)."""
    if placement.device.type != "cuda":
        cpu = platform.processor() or platform.machine()
        return {"name": f"CPU ({cpu}, {os.cpu_count()} cores)", "peak_flops": None}
    name = torch.cuda.get_device_name(placement.device)
    peak = peak_tflops * 1e12 if peak_tflops else next((p for key, p in PEAK_BF16_FLOPS if key in name), None)
    return {"name": name, "peak_flops": peak}


# ----------------------------------------------------------------------------- measuring


def synchronize(device) -> None:
    """Wait for queued GPU work: a timer read before it would time the launch, not the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device, fn):
    """(seconds, result) of ``fn()``, the device synchronised before and after."""
    synchronize(device)
    started = time.perf_counter()
    result = fn()
    synchronize(device)
    return time.perf_counter() - started, result


def loop_rows(split: dict, start_batch: int, batches: int, batch_size: int, seed: int) -> dict:
    """The rows of batches ``start_batch`` .. ``start_batch + batches`` of ``split`` in length-grouped order.

    Timing a few steps needs a small split; a random sample of rows would be padded
    more than the real loop's length-grouped batches, so the sample is taken in the
    order the loops visit a split (``grouped_order``; passes repeated if it is short).
    """
    generator, needed = torch.Generator().manual_seed(seed), (start_batch + batches) * batch_size
    order = torch.cat([grouped_order(row_lengths(split), batch_size, generator)
                       for _ in range(math.ceil(needed / len(split["input_ids"])))])
    return select(split, order[start_batch * batch_size:needed])


def training_row(loop: str, function: str, batch: str, seconds: float, log: dict, params: int,
                 peak: float | None, device) -> dict:
    """One row of the training table from a timed run of ``log['steps']`` steps (tokens from the loop's log)."""
    real = log["real_tokens"]
    tokens_per_second = real / seconds
    mfu = 6 * params * tokens_per_second / peak if peak else None
    return {"loop": loop, "function": function, "batch": batch, "steps": log["steps"], "seconds": seconds,
            "seconds_per_step": seconds / log["steps"], "real_tokens": real, "padded_tokens": log["padded_tokens"],
            "real_tokens_per_second": tokens_per_second, "padding_ratio": log.get("padding_ratio"),
            "trainable_params": params, "mfu": mfu, "final_loss": log["final_loss"],
            "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None}


def reset_memory_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- training loops


def trainable(params) -> int:
    return sum(p.numel() for p in params if p.requires_grad)


def bench_finetune(model, data, args, placement, peak) -> dict:
    """train_supervised on D (the original's fine-tuning), ``args.steps`` steps after a warm-up."""
    train = data.split("train")

    def run(rows: dict):
        return train_supervised(model, TASK, rows, epochs=1, lr=1e-4, batch_size=args.batch_size,
                                weight_decay=0.0, seed=0, placement=placement)

    run(loop_rows(train, 0, args.warmup_steps, args.batch_size, seed=0))
    rows = loop_rows(train, args.warmup_steps, args.steps, args.batch_size, seed=0)
    reset_memory_peak(placement.device)
    seconds, log = timed(placement.device, lambda: run(rows))
    return training_row("fine-tune", "train_supervised", f"{args.batch_size} rows of D", seconds, log,
                        trainable(model.parameters()), peak, placement.device)


def gd_params(args, steps: int):
    """GD's loop knobs: gpu_smoke.yaml's (lr 1e-5, 32 forget + 32 retain rows a step), a fixed step count."""
    return METHODS["gd"].Params(steps=steps, lr=1e-5, batch_size=args.batch_size,
                                retain_batch_size=args.batch_size)


def bench_unlearn(model, data, args, placement, peak) -> dict:
    """unlearn(..., "gd") at forget10: each step a forget and a retain batch, forward and backward."""
    def run(steps: int):
        return unlearn(model, TASK, data, "gd", gd_params(args, steps), seed=0, placement=placement)

    run(args.warmup_steps)
    reset_memory_peak(placement.device)
    seconds, log = timed(placement.device, lambda: run(args.steps))
    return training_row("GD unlearning", "unlearn(gd)", f"{args.batch_size} forget + {args.batch_size} retain",
                        seconds, log, trainable(model.parameters()), peak, placement.device)


def bench_bend(model, theta_1: dict, data, args, placement, peak) -> dict:
    """fit_bends (one bend) from ``theta_1`` (fine-tuned) to ``model``'s weights (unlearned), objective GD.

    A bend trains one epoch over the forget set; the timed run is given a forget set of
    exactly ``args.steps`` batches (from the loop's own order), so that one epoch is the
    step count. Both endpoints are already on the device, as the loop keeps them.
    """
    forget = data.split("forget")
    theta_2 = {name: p.detach() for name, p in model.named_parameters()}
    fit = CurveFitSpec(epochs=1, lr=1e-5, batch_size=args.batch_size)

    def run(view: ReplacedSplits):
        bends, log = fit_bends(model, theta_1, theta_2, TASK, view, "gd", gd_params(args, 0), fit,
                               seed=0, placement=placement)
        return log, sum(b.numel() for b in bends[0].values())

    run(ReplacedSplits(data, {"forget": loop_rows(forget, 0, args.warmup_steps, args.batch_size, seed=1)}))
    view = ReplacedSplits(data, {"forget": loop_rows(forget, args.warmup_steps, args.steps, args.batch_size, seed=1)})
    reset_memory_peak(placement.device)
    seconds, (log, bend_params) = timed(placement.device, lambda: run(view))
    return training_row("Bezier bend (GD)", "fit_bends", f"{args.batch_size} forget + {args.batch_size} retain",
                        seconds, log, bend_params, peak, placement.device)


def bench_training(model, data, args, placement, peak) -> tuple[list[dict], dict]:
    """The three loops in the order a grid runs them; returns the rows and the fine-tuned weights."""
    rows = [bench_finetune(model, data, args, placement, peak)]
    progress(rows[-1])
    # the bend's first endpoint: the fine-tuned weights, a copy on the device (as the bend loop holds it)
    theta_1 = {name: p.detach().clone() for name, p in model.named_parameters()}
    rows.append(bench_unlearn(model, data, args, placement, peak))
    progress(rows[-1])
    rows.append(bench_bend(model, theta_1, data, args, placement, peak))
    progress(rows[-1])
    return rows, theta_1


def progress(row: dict) -> None:
    print(f"  {row['loop']}: {row['steps']} steps in {row['seconds']:.2f} s", flush=True)


# ----------------------------------------------------------------------------- one curve point


def bench_evaluation(model, retrained_state: dict, data, options, args, placement) -> dict:
    """TASK.evaluate of ``model`` at forget10, after the evaluation context is built once.

    The context (the retrained model's forget truth ratios, for Forget Quality) is what an
    evaluation process computes once and reuses for every point; it is timed apart.
    """
    context_seconds, context = timed(placement.device,
                                     lambda: TASK.eval_context(options, data, retrained_state, placement))
    print(f"  evaluation context: {context_seconds:.2f} s", flush=True)
    data.eval_tokens[:] = [0, 0]  # the padding ratio of the timed points only
    seconds, metrics = [], {}
    for point in range(args.eval_points):
        took, metrics = timed(placement.device, lambda: TASK.evaluate(model, options, data, context, placement))
        seconds.append(took)
        print(f"  curve point {point + 1}/{args.eval_points}: {took:.2f} s", flush=True)
    steady = seconds[1:] or seconds  # later points reuse the tokenised evaluation sets
    rows = data.rows
    return {"what": "TOFU curve point (TASK.evaluate)", "ratio": RATIO, "eval_size": args.eval_size,
            "rows": {"forget": len(rows.forget_eval), "retain": len(rows.retain_eval),
                     "real_authors": len(rows.real_authors), "world_facts": len(rows.world_facts)},
            "perturbed_per_row": {"forget": len(rows.forget_eval[0]["perturbed_answer"]),
                                  "retain": len(rows.retain_eval[0]["perturbed_answer"]),
                                  "real_authors": len(rows.real_authors[0]["perturbed_answer"]),
                                  "world_facts": len(rows.world_facts[0]["perturbed_answer"])},
            "max_new_tokens": args.max_new_tokens, "eval_batch_size": args.eval_batch_size,
            "context_seconds": context_seconds, "point_seconds": seconds, "first_point_seconds": seconds[0],
            "seconds_per_point": sum(steady) / len(steady), "steady_state": len(seconds) > 1,
            "eval_padding_ratio": data.eval_padding_ratio(),
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}}


def bench_model(args, options, placement, peak: float | None) -> dict:
    """Data and model (the tokenizer trained on TOFU's text: no hub access), then the loops and
    one curve point of the unlearned model; everything on the device is freed on return."""
    took, data = timed(placement.device, lambda: TASK.load(options, RATIO))
    print(f"  data and tokenizer (vocab {len(data.tokenizer)}): {took:.1f} s", flush=True)
    took, model = timed(placement.device, lambda: TASK.new_model(options, seed=0, placement=placement))
    print(f"  model tiny-phi {args.n_layer} x {args.n_embd}, {trainable(model.parameters()) / 1e6:.1f}M parameters:"
          f" {took:.1f} s", flush=True)
    result, retrained = {}, None  # the fine-tuned weights stand in for the retrained model
    if not args.skip_training:
        print(f"training: {args.warmup_steps} warm-up + {args.steps} timed steps per loop", flush=True)
        result["training"], retrained = bench_training(model, data, args, placement, peak)
    if not args.skip_eval:
        print(f"evaluation: {args.eval_points} curve point(s)", flush=True)
        retrained = retrained or {name: p.detach().clone() for name, p in model.named_parameters()}
        result["evaluation"] = [bench_evaluation(model, retrained, data, options, args, placement)]
    return result


# ----------------------------------------------------------------------------- the grid


def grid_spec(spec_path: str, folder: str, tiny: bool, dest: str) -> str:
    """``spec_path`` with its TOFU path set to ``folder`` (with ``tiny``: CPU-sized); the new file's path.

    The shipped sweep names its data relative to the current directory; the benchmark
    uses the folder it was given instead, wherever it runs from.
    """
    import yaml

    with open(spec_path) as f:
        spec = yaml.safe_load(f)
    for task in spec["tasks"]:
        if task["name"] == "tofu" and task.get("options", {}).get("source") == "local":
            task["options"]["path"] = folder
    if tiny:  # the same grid's shape on a CPU in about a minute: tiny model, one pass of everything
        spec.update(settings=["Rand"], points=3, precision="fp32")
        for task in spec["tasks"]:
            task["methods"] = task["methods"][:2]
            task["options"].update({k: TINY[k] for k in ("n_layer", "n_embd", "n_head", "vocab_size")},
                                   epochs=1, eval_size=TINY["eval_size"], max_new_tokens=TINY["max_new_tokens"],
                                   retain_authors=2, max_ratio=1)
            task["hparams"] = {m: {**h, "epochs": 1} for m, h in task.get("hparams", {}).items()
                               if m in task["methods"]}
            task["curve_fit"] = {**task.get("curve_fit", {}), "epochs": 1}
        spec["resources"] = {"max_concurrent_trials": 2, "trial_cpus": 0.5, "eval_cpus": 1, "eval_gpus": 0,
                             "train": {"num_workers": 0, "use_gpu": False, "resources_per_worker": {}}}
    path = os.path.join(dest, os.path.basename(spec_path))
    with open(path, "w") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return path


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals: concurrent jobs count once."""
    total, reach = 0.0, -math.inf
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def ledger_accounting(storage: str, launched: float, wall: float) -> dict:
    """Where the grid's wall time went, from the job ledger and the artifacts' meta.json.

    A training job runs from its ledger record (written when it starts) to its
    artifact's ``written_at``; a curve's evaluation batch from its record to its points'
    ``written_at``. ``train_seconds`` is the loop itself (mcu_ray's own timer).
    """
    store = Store(storage)
    training, evaluation, loop_seconds = [], [], {}
    for record in store.job_records():
        if not store.has_artifact(record["key"]):
            continue  # a job that failed before writing: its time is counted as outside
        meta = store.read_meta(record["key"])
        interval = (record["started_at"], meta["written_at"])
        if record["kind"] in TRAINING_KINDS:
            training.append(interval)  # a retried job: two records, one artifact (the union counts it once)
            loop_seconds[record["key"]] = meta.get("train_seconds", 0.0)
        elif record["kind"] == "evaluation":
            evaluation.append(interval)
    in_jobs = union_seconds(training + evaluation)
    first = min((start for start, _ in training + evaluation), default=launched + wall)
    last = max((end for _, end in training + evaluation), default=launched)
    return {"wall_seconds": wall, "training_jobs": len(training), "evaluation_batches": len(evaluation),
            "training_loop_seconds": sum(loop_seconds.values()),
            "training_job_seconds": union_seconds(training),
            "evaluation_batch_seconds": union_seconds(evaluation),
            "in_any_job_seconds": in_jobs,
            "outside_jobs_seconds": wall - in_jobs,
            "outside_share": (wall - in_jobs) / wall,
            "launch_to_first_job_seconds": first - launched, "last_write_to_exit_seconds": launched + wall - last}


def bench_grid(args, folder: str) -> dict:
    """The sweep through the real CLI in a subprocess on a fresh store; wall time from launch to exit."""
    import shutil

    tmp = tempfile.mkdtemp(prefix="mcu_bench_gpu_")
    try:
        spec = grid_spec(args.spec, folder, args.tiny, tmp)
        storage = os.path.join(tmp, "store")
        cmd = [sys.executable, "-m", "mcu_ray.sweep", spec, "--storage", storage, "--no-report"]
        print("  " + " ".join(cmd), flush=True)
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        log_path = os.path.join(tmp, "cli.log")
        returncode, launched, wall = run_sweep_cli(cmd, REPO, env, log_path, "  grid")
        result = {"spec": args.spec, "tiny": args.tiny, "command": cmd, "returncode": returncode,
                  **ledger_accounting(storage, launched, wall)}
    finally:
        if args.keep:
            print(f"  store and CLI log kept under {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


# ----------------------------------------------------------------------------- tables


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "NOT met"


def training_table(rows: list[dict], gpu_target: bool) -> str:
    head = f"{'loop':<18}{'function':<18}{'steps':>6}{'s/step':>10}{'real tok/s':>12}{'padded/real':>13}" \
           f"{'MFU':>9}{'params':>11}{'peak GiB':>10}"
    lines = [head]
    for r in rows:
        memory = "n/a" if r["peak_memory_gib"] is None else f"{r['peak_memory_gib']:.1f}"
        lines.append(f"{r['loop']:<18}{r['function']:<18}{r['steps']:>6}{r['seconds_per_step']:>10.4f}"
                     f"{r['real_tokens_per_second']:>12.0f}{r['padding_ratio']:>13.3f}{percent(r['mfu']):>9}"
                     f"{r['trainable_params'] / 1e6:>10.1f}M{memory:>10}")
    mfus = [r["mfu"] for r in rows]
    met = None if not gpu_target or None in mfus else min(mfus) >= TARGET_MFU
    lines.append(f"target: MFU >= {TARGET_MFU:.0%} on one H100/H200, real tokens only (6 x params x real tok/s "
                 f"/ bf16 dense peak): {verdict(met)}")
    return "\n".join(lines)


def evaluation_table(row: dict, gpu_target: bool) -> str:
    sizes = ", ".join(f"{k} {n} x (answer{', paraphrase' if k in ('forget', 'retain') else ''}, "
                      f"{row['perturbed_per_row'][k]} perturbed)" for k, n in row["rows"].items())
    kind = "steady state, after the first" if row["steady_state"] else "first point of the process"
    lines = [f"TOFU forget{RATIO:02d}, eval_size {row['eval_size']}: {sizes}; greedy ROUGE, "
             f"max_new_tokens {row['max_new_tokens']}, eval batch {row['eval_batch_size']}",
             f"{'evaluation context, once (reference forget truth ratios)':<58}{row['context_seconds']:>9.2f} s",
             f"{'first curve point (tokenises the evaluation sets)':<58}{row['first_point_seconds']:>9.2f} s",
             f"{'seconds per curve point (' + kind + ')':<58}{row['seconds_per_point']:>9.2f} s",
             f"{'evaluation padding ratio (padded/real, loss batches)':<58}{row['eval_padding_ratio']:>9.3f}"]
    met = row["seconds_per_point"] <= TARGET_EVAL_SECONDS if gpu_target else None
    lines.append(f"target: <= {TARGET_EVAL_SECONDS:g} s per curve point on one H100/H200: {verdict(met)}")
    return "\n".join(lines)


def grid_table(grid: dict, gpu_target: bool) -> str:
    wall = grid["wall_seconds"]

    def line(label, seconds):
        return f"{label:<62}{seconds:>9.1f} s {seconds / wall:>7.1%}"

    lines = [f"{grid['spec']}{' (CPU-sized by --tiny)' if grid['tiny'] else ''}: exit code {grid['returncode']}, "
             f"{grid['training_jobs']} training jobs, {grid['evaluation_batches']} curve evaluation batches",
             line("wall time, launch to exit", wall),
             line("  in training loops (sum of meta.json train_seconds)", grid["training_loop_seconds"]),
             line("  in training jobs (ledger start -> artifact written, union)", grid["training_job_seconds"]),
             line("  in curve evaluations (ledger start -> points written, union)", grid["evaluation_batch_seconds"]),
             line("  in any job (union of the two above)", grid["in_any_job_seconds"]),
             line("  outside any job (start-up, scheduling, tables, shutdown)", grid["outside_jobs_seconds"]),
             line("    of which launch -> first job", grid["launch_to_first_job_seconds"]),
             line("    of which last artifact -> exit", grid["last_write_to_exit_seconds"])]
    met = grid["outside_share"] <= TARGET_OUTSIDE_SHARE if gpu_target and grid["returncode"] == 0 else None
    lines.append(f"target: <= {TARGET_OUTSIDE_SHARE:.0%} of wall time outside training and evaluation jobs on one "
                 f"H100/H200: {verdict(met)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    folder = tofu_dir(args.tofu_dir)
    started = time.perf_counter()

    # Stage 1: the device, its precision and peak, the task options.
    placement = make_placement(args)
    device = device_info(placement, args.peak_tflops)
    options = task_options(args, folder)
    # the targets are stated for one H100/H200 at the real sizes; elsewhere the verdict is n/a
    gpu_target = not args.tiny and any(k in device["name"] for k in ("H100", "H200"))
    print(f"mcu_ray GPU benchmark on {device['name']}, precision {placement.precision}, torch {torch.__version__}"
          f"{' (--tiny: a smoke run, not a measurement)' if args.tiny else ''}", flush=True)
    report = {"device": device, "precision": placement.precision, "tiny": args.tiny, "tofu_dir": folder,
              "torch": torch.__version__, "python": platform.python_version(), "options": asdict(options),
              "steps": args.steps, "warmup_steps": args.warmup_steps, "batch_size": args.batch_size,
              "targets": {"mfu": TARGET_MFU, "eval_seconds": TARGET_EVAL_SECONDS,
                          "outside_share": TARGET_OUTSIDE_SHARE}}
    # Stage 2: the training loops and one curve point, on one model in this process.
    sections = []
    if not (args.skip_training and args.skip_eval):
        report |= bench_model(args, options, placement, device["peak_flops"])
        if "training" in report:
            sections.append(("training throughput", training_table(report["training"], gpu_target)))
        if "evaluation" in report:
            sections.append(("one TOFU curve point", evaluation_table(report["evaluation"][0], gpu_target)))
        if placement.device.type == "cuda":
            torch.cuda.empty_cache()  # the model is gone; the grid's processes need the GPU's memory

    # Stage 3 (--grid): the sweep through the real CLI.
    if args.grid:
        print("grid: " + args.spec, flush=True)
        report["grid"] = bench_grid(args, folder)
        sections.append(("grid through the CLI", grid_table(report["grid"], gpu_target)))

    report["total_seconds"] = time.perf_counter() - started
    print(f"\ndevice: {device['name']}; precision {placement.precision}; bf16 dense peak "
          f"{'n/a' if device['peak_flops'] is None else format(device['peak_flops'] / 1e12, 'g') + ' TFLOP/s'}; "
          f"total {report['total_seconds']:.0f} s")
    for title, text in sections:
        print(f"\n== {title}\n{text}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"\njson: {args.json_out}", flush=True)
    return 0 if report.get("grid", {}).get("returncode", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
