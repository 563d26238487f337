"""Every class of bad input is refused the same way through the real command line (README, "Resume,
faults, bad input"): exit 2 before any work, one ``error:`` line naming the field, the value found and
what is allowed, never a traceback, and nothing written to the --storage folder.

Most cases run ``mcu_ray.sweep.main`` in this process (milliseconds each: the refusals happen while the
file is parsed); a few run ``python -m mcu_ray.sweep`` to show the process itself prints no traceback.
"""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mcu_ray import sweep
from tests.helpers import tiny_digits_task

REPO = Path(__file__).resolve().parents[1]
TOFU_EVERY_RUN = ("full", "retain_perturbed", "real_authors_perturbed", "world_facts_perturbed")
GA_LR = {"loguniform": [1e-5, 0.1]}  # holds the digits task's GA learning rate, 1e-4 (a search's first trial)


def good() -> dict:
    """A sweep that parses: two digits methods, Rand and Met (the base every edit below breaks once)."""
    return {"name": "t", "settings": ["Rand", "Met"], "tasks": [tiny_digits_task()]}


def edited(*changes, base=good) -> dict:
    """``base()`` with each (dotted path, value) put in; list entries by index, missing mappings created."""
    doc = base()
    for dotted, value in changes:
        *parents, last = [int(k) if k.isdigit() else k for k in dotted.split(".")]
        target = doc
        for key in parents:
            target = target.setdefault(key, {}) if isinstance(target, dict) else target[key]
        target[last] = copy.deepcopy(value)
    return doc


def written(tmp: Path, content) -> str:
    """``content`` (a document, or the file's text or bytes) as the file tmp/sweep.yaml."""
    path = tmp / "sweep.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
    return str(path)


def document(*changes, args=(), base=good):
    """A case: the file of ``edited(*changes)``, then ``args``."""
    return lambda tmp: [written(tmp, edited(*changes, base=base)), *args]


def raw(content, args=()):
    """A case: a file holding ``content`` as it is, then ``args``."""
    return lambda tmp: [written(tmp, content), *args]


def searched() -> dict:
    """``good()`` with a search section that parses: GA's learning rate, four trials."""
    return {**good(), "search": {"trials": 4, "space": {"digits": {"ga": {"lr": GA_LR}}}}}


def tofu(tmp: Path, *files: str, ratios=(5,)) -> dict:
    """A TOFU sweep over a local folder holding (empty) ``files``.jsonl only."""
    folder = tmp / "tofu"
    folder.mkdir()
    for name in files:
        (folder / f"{name}.jsonl").write_text("")
    return {"name": "t", "settings": ["Rand"], "tasks": [{"name": "tofu", "ratios": list(ratios), "methods": ["npo"],
                                                          "options": {"source": "local", "path": str(folder)}}]}


def tofu_case(*files: str):
    """A case: ``tofu`` over a folder of ``files``, planned with --dry-run (which must refuse it already)."""
    return lambda tmp: [written(tmp, tofu(tmp, *files)), "--dry-run"]


def forget_list(content: bytes):
    """A case: MU-Bench's CIFAR-10 (its hub id) with a forget list file holding ``content``, --dry-run."""
    def make(tmp: Path) -> list[str]:
        (tmp / "forget.txt").write_bytes(content)
        task = {"name": "cifar10", "ratios": [2], "methods": ["ga"],
                "options": {"forget_index_file": str(tmp / "forget.txt")}}
        return [written(tmp, {"name": "m", "settings": ["Rand"], "tasks": [task]}), "--dry-run"]
    return make


def dataset_folder(tmp: Path) -> list[str]:
    """A case: MU-Bench's CIFAR-10 from a local folder that holds a README but no data file."""
    (tmp / "cifar").mkdir()
    (tmp / "cifar" / "README.md").write_text("# not a dataset\n")
    task = {"name": "cifar10", "ratios": [2], "methods": ["ga"], "options": {"dataset": str(tmp / "cifar")}}
    return [written(tmp, {"name": "m", "settings": ["Rand"], "tasks": [task]}), "--dry-run"]


def directory(tmp: Path) -> list[str]:
    (tmp / "sweeps").mkdir()
    return [str(tmp / "sweeps")]


def oversized(tmp: Path) -> list[str]:
    """Valid YAML, 11 MiB of it: a comment line repeated."""
    return [written(tmp, "name: t\n" + "# padding\n" * (11 * 2**20 // 10))]


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi"))  # 9**9 strings
LAUGHS_FLOW = ", ".join(LAUGHS.splitlines())  # the same, as one flow mapping's entries
BOMB = LAUGHS + "name: t\ntasks: [{name: digits, methods: [ga, rl]}]\n"
DEEP = "name: t\ntasks: " + "[" * 150 + "]" * 150 + "\n"

NAN, INF = float("nan"), float("inf")

# (case, argv maker (tmp folder -> the sweep's arguments), field the one line names, words of what is allowed)
CASES = [
    # the sweep file itself
    ("not UTF-8 (Latin-1)", raw("name: café\n".encode("latin-1")), "<file>", "not UTF-8 text (byte 0xe9"),
    ("not UTF-8 (binary)", raw(b"\x89PNG\r\n\x1a\n\x00\x00"), "<file>", "not UTF-8 text (byte 0x89"),
    ("a directory", directory, "<file>", "a directory: expected a sweep YAML file"),
    ("no such file", lambda tmp: [str(tmp / "nope.yaml")], "<file>", "no such sweep file"),
    ("over 10 MiB", oversized, "<file>", "a sweep file is at most 10,485,760 bytes"),
    ("YAML syntax", raw("name: t\ntasks: [{name: digits\n"), "<yaml>", "not valid YAML at line 3"),
    ("YAML bomb", raw(BOMB), "<yaml>", "more than 100,000 values, lists and mappings once its aliases are expanded"),
    ("YAML alias inside its anchor", raw("name: t\ntasks: &t [*t]\n"), "<yaml>", "contains itself"),
    ("YAML nested 150 deep", raw(DEEP), "<yaml>", "nested more than 100 deep"),
    ("not a mapping", raw("- name: t\n"), "<top level>", "a sweep file is a mapping"),
    # non-finite numbers
    ("learning rate .nan", document(("tasks.0.hparams.ga.lr", NAN)), "tasks[0].hparams.ga.lr", "finite number"),
    ("tolerance .inf", document(("tolerance", INF)), "tolerance", "finite number"),
    ("tolerance family -.inf", document(("tolerance", {"accuracy": -INF})), "tolerance.accuracy", "finite number"),
    ("tolerance past a float", raw(f"name: t\ntolerance: 1{'0' * 400}\ntasks: [{{name: digits, methods: [ga, rl]}}]\n"),
     "tolerance", "finite number"),
    ("task option .nan", document(("tasks.0.options.weight_decay", NAN)), "tasks[0].options.weight_decay",
     "finite number"),
    ("curve fit lr .inf", document(("tasks.0.curve_fit.lr", INF)), "tasks[0].curve_fit.lr", "finite number"),
    ("Sophia rho .nan", document(("tasks.0.hparams.ga.so", {"rho": NAN})), "tasks[0].hparams.ga.so.rho",
     "finite number"),
    ("eval CPUs .inf", document(("resources.eval_cpus", INF)), "resources.eval_cpus", "finite number"),
    ("resources per worker .inf", document(("resources.train.resources_per_worker", {"CPU": INF})),
     "resources.train.resources_per_worker", "non-negative number"),
    ("ratio .nan", document(("tasks.0.ratios", [NAN])), "tasks[0].ratios[0]", "strictly between 0 and 100"),
    ("search bound .inf", document(("search.space.digits.ga.lr", {"loguniform": [1e-5, INF]}), base=searched),
     "search.space.digits.ga.lr.loguniform[1]", "finite number"),
    ("--set lr=.nan", document(args=["--set", "tasks.0.hparams.ga.lr=.nan"]),
     "tasks[0].hparams.ga.lr", "finite number (not .nan, .inf or -.inf) (set by --set tasks.0.hparams.ga.lr=.nan)"),
    # sizes beyond any sane bound
    ("points", document(("points", 100_000)), "points", "at most 1,001 evaluated points"),
    ("bends", document(("bends", 5000)), "bends", "at most 100 bends"),
    ("epochs", document(("tasks.0.hparams.ga.epochs", 10**7)), "tasks[0].hparams.ga.epochs", "at most 100,000 epochs"),
    ("steps", document(("tasks.0.hparams.rl.steps", 10**9)), "tasks[0].hparams.rl.steps", "at most 10,000,000 steps"),
    ("batch size", document(("tasks.0.hparams.ga.batch_size", 10**8)), "tasks[0].hparams.ga.batch_size",
     "at most 1,000,000 examples per batch"),
    ("task's epochs", document(("tasks.0.options.epochs", 10**6)), "tasks[0].options.epochs", "at most 100,000"),
    ("curve fit batch size", document(("tasks.0.curve_fit.batch_size", 10**7)), "tasks[0].curve_fit.batch_size",
     "at most 1,000,000"),
    ("seeds", document(("seeds", list(range(1001)))), "seeds", "at most 1,000 seeds"),
    ("seed value", document(("seeds", [2**40])), "seeds[0]", "below 2**31"),
    ("workers", document(("resources.train.num_workers", 10**6)), "resources.train.num_workers", "at most 10,000"),
    ("TOFU eval_size", document(("tasks.0.options.eval_size", 10**8),
                                base=lambda: {**good(), "settings": ["Rand"], "tasks": [
                                    {"name": "tofu", "ratios": [5], "methods": ["npo"]}]}),
     "tasks[0].options.eval_size", "at most 1,000,000 rows"),
    ("search trials", document(("search.trials", 10**6), base=searched), "search.trials", "from 1 to 10000"),
    ("searched steps", document(("search.space.digits.ga.steps", {"int": [0, 10**9]}), base=searched),
     "search.space.digits.ga.steps", "at most 10,000,000 steps"),
    # data paths that exist but do not hold what the task reads (refused by --dry-run already)
    ("TOFU folder without full", tofu_case(), "tasks[0].options.path", "no full.jsonl, retain_perturbed.jsonl"),
    ("TOFU folder without the tokenizer's text", tofu_case(*TOFU_EVERY_RUN), "tasks[0].options.path",
     "no forget10_perturbed.jsonl, holdout10.jsonl there"),
    ("TOFU folder without the ratio's forget set",
     tofu_case(*TOFU_EVERY_RUN, "forget10_perturbed", "holdout10", "forget05_perturbed"), "tasks[0].ratios[0]",
     "has no holdout05.jsonl"),
    ("MU-Bench folder without data", dataset_folder, "tasks[0].options.dataset", "no data files there"),
    ("forget list with words", forget_list(b"3\n7\nseven\n"), "tasks[0].options.forget_index_file",
     "line 3 is 'seven'"),
    ("forget list negative", forget_list(b"3\n-7\n"), "tasks[0].options.forget_index_file", "line 2 is '-7'"),
    ("forget list empty", forget_list(b"\n\n"), "tasks[0].options.forget_index_file", "empty"),
    ("forget list not UTF-8", forget_list(b"\xff\xfe3\x00"), "tasks[0].options.forget_index_file", "not UTF-8 text"),
    # unknown keys, wrong types, unknown names
    ("unknown key", document(("tolernce", 0.1)), "tolernce", "did you mean 'tolerance'"),
    ("unknown knob", document(("tasks.0.hparams.ga.step", 3)), "tasks[0].hparams.ga.step", "allowed keys"),
    ("points as text", document(("points", "16")), "points", "expected an integer"),
    ("hparams as text", document(("tasks.0.hparams.ga", "fast")), "tasks[0].hparams.ga", "expected a mapping"),
    ("task name as a list", document(("tasks.0.name", ["digits"])), "tasks[0].name", "unknown task"),
    ("use_gpu as text", document(("resources.train.use_gpu", "yes")), "resources.train.use_gpu", "true or false"),
    ("unknown task", document(("tasks.0.name", "digit")), "tasks[0].name", "did you mean 'digits'"),
    ("unknown method", document(("tasks.0.methods", ["ga", "gaa"])), "tasks[0].methods[1]", "did you mean 'ga'"),
    ("unknown setting", document(("settings", ["Rnd"])), "settings[0]", "did you mean 'Rand'"),
    ("unknown curve", document(("curves", ["cubic"])), "curves[0]", "allowed: linear, bezier, polychain"),
    ("unknown precision", document(("precision", "fp16")), "precision", "allowed: auto, fp32"),
    ("unknown tracker", document(("tracking", "wandb")), "tracking", "unknown tracker"),
    ("sweep name a path", document(("name", "a/b")), "name", "letters, digits"),
    ("no tasks", lambda tmp: [written(tmp, {"name": "t"})], "tasks", "this field is required"),
    # ratios and method pairs
    ("ratio 0", document(("tasks.0.ratios", [0])), "tasks[0].ratios[0]", "strictly between 0 and 100"),
    ("ratio 150", document(("tasks.0.ratios", [150])), "tasks[0].ratios[0]", "strictly between 0 and 100"),
    ("ratio twice", document(("tasks.0.ratios", [2, 2])), "tasks[0].ratios[1]", "duplicate"),
    ("Met with one method", document(("tasks.0.methods", ["ga"]), ("tasks.0.hparams", {})), "tasks[0].methods",
     "pair two different methods"),
    # resources
    ("no concurrent trials", document(("resources.max_concurrent_trials", 0)), "resources.max_concurrent_trials",
     ">= 1"),
    ("FSDP on one worker", document(("resources.train", {"num_workers": 1, "strategy": "fsdp"})),
     "resources.train.num_workers", "expected 2 or more"),
    # the search section
    ("unknown sampler", document(("search.sampler", "cmaes"), base=searched), "search.sampler", "allowed: auto"),
    ("knob the method lacks", document(("search.space.digits.ga", {"alpha": {"uniform": [0, 1]}}), base=searched),
     "search.space.digits.ga.alpha", "ga has no knob"),
    # --set, --only and flags
    ("--set without =", document(args=["--set", "tolerance"]), "--set", "expected key=value"),
    ("--set past a list", document(args=["--set", "tasks.3.ratios=[2]"]), "tasks[3]",
     "index it with 0..0"),
    ("--set bad YAML", document(args=["--set", "tasks.0.ratios=[2"]), "tasks[0].ratios",
     "not valid YAML at line 1"),
    ("--set YAML bomb", document(args=["--set", f"tasks.0.options={{{LAUGHS_FLOW}}}"]),
     "tasks[0].options", "once its aliases are expanded"),
    ("--only unknown key", document(args=["--only", "colour=red"]), "--only",
     "KEY one of task, setting"),
    ("--only method not in sweep", document(args=["--only", "method=npo"]), "--only method",
     "not in this sweep"),
    ("--json without --dry-run", document(args=["--json"]), "--json", "add --dry-run"),
]
FLAGS = {"--json without --dry-run"}  # a combination of flags: no value to quote back


def refused(tmp: Path, argv: list[str], monkeypatch, capsys) -> str:
    """The one ``error:`` line ``mcu_ray.sweep.main(argv)`` exits 2 with (a Ray start fails the test)."""
    def no_ray(*args, **kwargs):
        raise AssertionError("the bad input was not refused: Ray was starting")

    monkeypatch.setattr(sweep, "start_ray", no_ray)
    with pytest.raises(SystemExit) as exit_:
        sweep.main([*argv, "--storage", str(tmp / "runs"), "--no-report"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 2 and not out, (exit_.value.code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("name,make,field,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_naming_field_value_and_allowed(name, make, field, words, tmp_path, monkeypatch, capsys):
    argv = make(tmp_path)
    line = refused(tmp_path, argv, monkeypatch, capsys)
    # "error: <file>: <field>: got <value>; <allowed>" (a problem of the command line: no file)
    assert re.match(rf"error: ({re.escape(argv[0])}: )?{re.escape(field)}: ", line), line
    assert name in FLAGS or re.search(r": (got .+|missing); ", line), line
    assert words in line, line
    assert not (tmp_path / "runs").exists()


SUBPROCESS = ["not UTF-8 (binary)", "YAML bomb", "learning rate .nan", "TOFU folder without full"]


def test_the_process_prints_no_traceback(tmp_path):
    """The same refusals from ``python -m mcu_ray.sweep``: a traceback printed on the way out would show here."""
    cases = {name: (make, field) for name, make, field, _ in CASES}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in SUBPROCESS:
        make, field = cases[name]
        folder = tmp_path / str(SUBPROCESS.index(name))
        folder.mkdir()
        done = subprocess.run([sys.executable, "-m", "mcu_ray.sweep", *make(folder), "--storage", str(folder / "runs")],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
        assert done.returncode == 2 and "Traceback" not in done.stderr and not done.stdout, (name, done.stderr)
        assert done.stderr.count("\n") == 1 and f"{field}: " in done.stderr, (name, done.stderr)
        assert not (folder / "runs").exists(), name
