"""The sweep's result tables: every column of every table, its Arrow type, unit and meaning.

A table is a folder of Parquet files, ``<storage>/<sweep>/<table>/<key>.parquet``, one file
per cell (results, barriers) or per model (references, pathway, examples; examples also per curve),
named by its content key.
No hive folders: every file carries all of its table's columns, ``task`` and ``setting``
included, in one schema declared here, so a folder, a glob and a single file read alike:

    pandas.read_parquet("mcu_runs/quickstart/results")
    duckdb.sql("SELECT * FROM read_parquet('mcu_runs/quickstart/results/*.parquet')")
    polars.read_parquet("mcu_runs/quickstart/results/*.parquet")
    mcu_ray.load("mcu_runs", "quickstart", "results")

The metric columns are the metrics of the registry (``mcu_ray.metrics``) that some registered
task emits (``Task.metric_directions``), in registry order; a row of one task holds the other
tasks' metrics as nulls. Everything that writes or reads a table
goes through ``write_table`` / ``read_table``.

Verdicts are never stored. The barriers table holds each curve's deviations from the chord;
``load(..., "verdicts")`` (one row per curve: retain barrier, forget cliff, MCU) and the
``barrier`` column of ``load(..., "barriers")`` decide them with the tolerances asked for, or
the sweep file's, so a changed tolerance re-decides every curve without recomputing anything.

``python -m mcu_ray.tables`` prints the data dictionary (docs/tables.md).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mcu_ray.barriers import barrier
from mcu_ray.metrics import METRICS, direction
from mcu_ray.spec import Tolerances, parse_tolerance
from mcu_ray.store import Store
from mcu_ray.tasks import TASKS

STRING, FLOAT, INT = pa.string(), pa.float64(), pa.int64()


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    unit: str  # "" when the column is a name or a key
    meaning: str


def metric_names() -> list[str]:
    """Every metric column: the registry's metrics (``mcu_ray.metrics``) that a registered task emits, in
    registry order; a metric a task emits without a registry entry is refused."""
    emitted = {m for task in TASKS.values() for m in task.metric_directions}
    undeclared = sorted(emitted - set(METRICS))
    if undeclared:
        raise KeyError(f"metrics {undeclared} have no entry in mcu_ray.metrics.METRICS")
    return [m for m in METRICS if m in emitted]


def metric_tasks(metric: str) -> list[str]:
    return [name for name, task in TASKS.items() if metric in task.metric_directions]


def _metric_columns() -> list[Column]:
    return [Column(m, FLOAT, METRICS[m].unit, METRICS[m].definition) for m in metric_names()]


# columns several tables declare alike
TASK = Column("task", STRING, "", "task name")
RATIO = Column("ratio", FLOAT, "percent", "forget ratio (10 = 10 %)")
PRECISION = Column("precision", STRING, "", "fp32 | bf16-mixed | bf16")


# ----------------------------------------------------------------------------- tables
_COMPUTED_BY = ("of the code that computed the row's values: the job that evaluated the model for a model's "
                "row (the artifact's meta.json `provenance`), the cell's trial for deviations and failed rows")
PROVENANCE = [
    Column("sweep", STRING, "", "the sweep's name (its folder under the storage root)"),
    Column("spec_hash", STRING, "", "hash of the resolved sweep file that wrote the row, tolerances left out"),
    # mcu_ray.provenance.ROW_FIELDS, in order
    Column("code_commit", STRING, "", f"git commit (HEAD) {_COMPUTED_BY}; 'unknown' when its mcu_ray is not a "
                                      f"git checkout"),
    Column("code_dirty", pa.bool_(), "", "whether that checkout had uncommitted changes or new files under mcu_ray/ "
                                         "(the commit alone does not pin the code then); null when unknown"),
    Column("code_version", STRING, "", "mcu_ray version of that code"),
    *(Column(f"{lib}_version", STRING, "", f"{lib} version installed where the values were computed")
      for lib in ("torch", "transformers", "ray", "peft", "python")),
    Column("device_name", STRING, "", "device the values were computed on, 'cuda: <GPU name>' or 'cpu: <CPU model>'"),
]
CELL = [
    Column("cell_id", STRING, "", "content key of the cell (task, setting, method pair, ratio, seed)"),
    Column("task", STRING, "", "task name: digits | tofu | cifar10 | ddi | nlvr2"),
    Column("setting", STRING, "", "setting of paper Table 1: Rand, Rand-CL, Rand-SO, CL-Non-CL, FO-SO, Met, ..."),
    Column("method_1", STRING, "", "unlearning method of endpoint 1 (t = 0)"),
    Column("method_2", STRING, "", "unlearning method of endpoint 2 (t = 1)"),
    Column("optimizer_1", STRING, "", "optimiser of endpoint 1: fo (AdamW) | so (Sophia)"),
    Column("optimizer_2", STRING, "", "optimiser of endpoint 2: fo | so"),
    Column("curriculum_1", STRING, "", "curriculum of endpoint 1: none | cl"),
    Column("curriculum_2", STRING, "", "curriculum of endpoint 2: none | cl"),
    Column("ratio", FLOAT, "percent", "forget ratio: Df as a percentage of the training set D (10 = 10 %)"),
    Column("seed", INT, "", "the cell's seed s"),
    Column("endpoint_1", STRING, "", "artifact key of endpoint 1"),
    Column("endpoint_2", STRING, "", "artifact key of endpoint 2"),
    Column("seed_1", INT, "", "seed endpoint 1 was unlearned with"),
    Column("seed_2", INT, "", "seed endpoint 2 was unlearned with (s + 1 in the Rand settings)"),
    PRECISION,
    Column("curve", STRING, "", "linear | bezier | polychain"),
    Column("curve_key", STRING, "", "artifact key of the curve's evaluated points"),
]
STATUS = [
    Column("status", STRING, "", "ok | diverged (a model the row needs failed to train; its numbers are NaN)"),
    Column("reason", STRING, "", "why the status is not ok: the failed artifact's key and its reason; '' if ok"),
]
CELL_SECONDS = Column("cell_seconds", FLOAT, "seconds",
                      "wall time of the trial that wrote the cell: building what it needed and was not stored yet, "
                      "evaluating its curves, summarising them (the same on every row of the cell)")
_SUMMARY_UNIT = "the metric's unit"
BARRIER_COLUMNS = [
    Column("metric", STRING, "", "the metric this row summarises (a metric column of the results table)"),
    Column("deviation", FLOAT, _SUMMARY_UNIT,
           "worst deviation from the chord, max over t of (chord - value) for a higher-is-better metric, "
           "(value - chord) for a lower-is-better one: positive is bad; 0 at the endpoints, so >= 0"),
    Column("argmax_t", FLOAT, "t (0-1)", "where along the curve the worst deviation sits"),
    Column("min", FLOAT, _SUMMARY_UNIT, "lowest value along the curve"),
    Column("max", FLOAT, _SUMMARY_UNIT, "highest value along the curve"),
    Column("mean", FLOAT, _SUMMARY_UNIT, "mean over the evaluated points"),
    Column("start", FLOAT, _SUMMARY_UNIT, "value at t = 0 (endpoint 1)"),
    Column("end", FLOAT, _SUMMARY_UNIT, "value at t = 1 (endpoint 2)"),
    Column("integral", FLOAT, f"{_SUMMARY_UNIT} x t", "integral of the metric over t in [0, 1], trapezoid rule"),
    Column("curve_length", FLOAT, "L2 norm in parameter space", "length of the curve between its endpoints"),
]
_REFERENCE_COLUMNS = [
    TASK,
    RATIO,
    PRECISION,
    Column("model", STRING, "", "original (trained on D) | retrained (trained on Dr only: the gold standard)"),
    Column("key", STRING, "", "artifact key of the model"),
]
_PATHWAY_COLUMNS = [
    TASK,
    RATIO,
    Column("seed", INT, "", "seed of the pathway endpoint"),
    Column("method", STRING, "", "the pathway method: pathway_<source method>"),
    Column("source_method", STRING, "", "the method whose endpoint the pathway curve runs to"),
    Column("optimizer", STRING, "", "fo | so"),
    Column("curriculum", STRING, "", "none | cl"),
    Column("endpoint", STRING, "", "artifact key of the pathway endpoint"),
    Column("t_star", FLOAT, "t (0-1)", "the point of the curve original (t = 0) -> source (t = 1) exported"),
    Column("model", STRING, "", "original | source | pathway (phi(t*)) | retrained | curve (an evaluated point)"),
    Column("t", FLOAT, "t (0-1)", "curve rows: where the point sits; NaN for the models"),
    Column("gap_to_retrained", FLOAT, "metric units",
           "mean |metric - retrained model's| over the task's gap metrics (Task.gap_metrics)"),
    Column("selection_gap", FLOAT, "fraction (0-1)",
           "mean |accuracy - target| on Df and Dr, what t* was chosen on; NaN where not measured"),
]


_EXAMPLE_MODEL_COLUMNS = [
    TASK,
    RATIO,
    PRECISION,
    Column("model", STRING, "", "original | retrained | endpoint | curve (a point phi(t), its ends included)"),
    Column("key", STRING, "", "artifact key of the model; curve rows: the curve's key (the results table's "
                              "curve_key)"),
    Column("method", STRING, "", "endpoint rows: the unlearning method; null on other rows"),
    Column("optimizer", STRING, "", "endpoint rows: fo | so"),
    Column("curriculum", STRING, "", "endpoint rows: none | cl"),
    Column("seed", INT, "", "endpoint rows: the seed it was unlearned with"),
    Column("curve", STRING, "", "curve rows: linear | bezier | polychain"),
    Column("endpoint_1", STRING, "", "curve rows: artifact key of the curve's t = 0 end. t is the curve's own: a "
                                     "results row whose endpoint_1 is this endpoint_2 (a shared line) reads 1 - t"),
    Column("endpoint_2", STRING, "", "curve rows: artifact key of the curve's t = 1 end"),
    Column("t", FLOAT, "t (0-1)", "curve rows: where the point sits (0 and 1: the endpoints' own rows); NaN for a "
                                  "model"),
]
# The per-example values of one model point (``tasks.base.Evaluation.examples``), as a task's evaluate
# computes its metrics from them; an artifact's examples.parquet holds these and ``t``.
EXAMPLE_COLUMNS = [
    Column("split", STRING, "", "classification: test | retain | forget; TOFU: forget | retain | real_authors | "
                                "world_facts | holdout (the held-out authors, attack scores only)"),
    Column("example", INT, "", "index of the row in its split, the same at every model point of a task and ratio in a "
                               "sweep (classification: test in the dataset's order, forget and retain by training-row "
                               "index; TOFU: the split's row order; forget is all of Df, whose first eval_size rows "
                               "are the evaluation set: the rows after them have attack scores only)"),
    Column("question", STRING, "", "TOFU: the question; null for classification"),
    Column("label", INT, "", "classification: the true class"),
    Column("predicted", INT, "", "classification: the predicted class (argmax)"),
    Column("correct", pa.bool_(), "", "classification: predicted = label; acc_<split> is its mean"),
    Column("prob", FLOAT, "probability (0-1)",
           "classification: the softmax probability of the true class (mia_efficacy's feature); TOFU: what "
           "prob_<split> averages, exp(-loss) on forget and retain, p(true) / (p(true) + sum of p(perturbed)) on "
           "real_authors and world_facts"),
    Column("loss", FLOAT, "nats", "classification: cross-entropy -log max(p(true class), 1e-12), float32 (loss_<split> "
                                  "is its mean); TOFU: the true answer's token-mean NLL (loss_forget, loss_retain)"),
    Column("answer", STRING, "", "TOFU: the reference answer"),
    Column("generated", STRING, "", "TOFU: the greedy answer (max_new_tokens) that ROUGE scores"),
    Column("rouge_recall", FLOAT, "fraction (0-1)", "TOFU: ROUGE-L recall of generated against answer (rouge_score, "
                                                    "stemmer); rouge_<split> is its mean"),
    Column("truth_ratio", FLOAT, "ratio", "TOFU: r = exp(loss(paraphrased answer on forget and retain, else the "
                                          "true one) - mean loss(perturbed answers)); truth_ratio_forget = "
                                          "mean(min(r, 1/r)), the others mean(max(0, 1 - r)); forget_quality = KS-test "
                                          "p-value of the forget r against the retrained model's"),
    Column("mia_loss_score", FLOAT, "nats", "the loss attack's score, mia_loss its ROC AUC (forget 0, held-out 1): "
                                            "classification the float64 cross-entropy on forget and test; TOFU the "
                                            "answer's token-mean NLL on forget and holdout; null elsewhere"),
    Column("min_k_score", FLOAT, "nats", "TOFU: the Min-K% Prob attack's score (k = 0.4) on forget and holdout, "
                                         "mia_min_k its ROC AUC; null elsewhere"),
]
_T_COLUMN = next(c for c in _EXAMPLE_MODEL_COLUMNS if c.name == "t")
EXAMPLE_SCHEMA = pa.schema([pa.field(c.name, c.type) for c in (_T_COLUMN, *EXAMPLE_COLUMNS)])


def _tables() -> dict[str, list[Column]]:
    metrics = _metric_columns()
    return {
        "results": [*PROVENANCE, *CELL, Column("t", FLOAT, "t (0-1)", "position along the curve: 0 = endpoint 1, "
                                                                       "1 = endpoint 2"), *metrics, *STATUS,
                    CELL_SECONDS],
        "barriers": [*PROVENANCE, *CELL, *BARRIER_COLUMNS, *STATUS, CELL_SECONDS],
        "references": [*PROVENANCE, *_REFERENCE_COLUMNS, *metrics],
        "pathway": [*PROVENANCE, *_PATHWAY_COLUMNS, *metrics],
        "examples": [*PROVENANCE, *_EXAMPLE_MODEL_COLUMNS, *EXAMPLE_COLUMNS],
    }


TABLES = _tables()  # table name -> its columns, in file order
SCHEMAS = {name: pa.schema([pa.field(c.name, c.type) for c in columns]) for name, columns in TABLES.items()}
ROWS = {"results": "one per cell, curve and evaluated t", "barriers": "one per cell, curve and metric",
        "references": "one per task, forget ratio and model (original | retrained)",
        "pathway": "one per pathway endpoint and model, plus one per evaluated point of its curve",
        "examples": "one per model point and example of each evaluation split (curve points: with --per-example)"}

# Computed by ``load``, never stored.
DERIVED = {
    "barriers": [
        Column("family", STRING, "", "the metric's family: which tolerance applies"),
        Column("tolerance", FLOAT, _SUMMARY_UNIT, "the family's tolerance used for `barrier`, in the metric's unit "
                                                  "(PrivLeak, in percent: the score tolerance x 100)"),
        Column("barrier", pa.bool_(), "",
               "deviation > tolerance; Forget Quality: its min below the significance level while both endpoints "
               "are at or above it; null when the curve failed"),
    ],
    "verdicts": [
        *PROVENANCE, *CELL,
        Column("retain_barrier", FLOAT, "nats", "B_r: the retain loss's worst deviation above the chord"),
        Column("forget_barrier", FLOAT, "nats", "B_f, the forget cliff: the forget loss's worst deviation below the "
                                                "chord"),
        Column("curve_length", FLOAT, "L2 norm in parameter space", "length of the curve between its endpoints"),
        Column("tolerance", FLOAT, "nats", "the loss tolerance the verdict used"),
        Column("mcu", pa.bool_(), "", "mode connectivity in unlearning: B_r <= tolerance and B_f <= tolerance "
                                      "(paper Eq. 3/4); null when the curve failed"),
        *STATUS,
    ],
}


# ----------------------------------------------------------------------------- writing and reading
def write_table(store: Store, sweep: str, name: str, rows: list[dict], key: str) -> None:
    """One file of table ``name``: ``rows`` in its schema, absent columns as nulls; unknown columns refused."""
    schema = SCHEMAS[name]
    unknown = sorted({k for row in rows for k in row} - set(schema.names))
    if unknown:
        raise ValueError(f"table {name!r} has no columns {unknown}: declare them in mcu_ray.tables")
    store.write_table(pa.Table.from_pylist(rows, schema=schema), sweep, name, key)


def example_table(examples: dict, t: float = float("nan")) -> pa.Table:
    """A model point's per-example values (``Evaluation.examples``: split -> columns) as rows of
    ``EXAMPLE_SCHEMA``, one per example of each split, ``example`` its index there; a value a split or
    a row has not (a column it lacks, NaN, None) is null, so SQL's IS NULL finds every one."""
    known, parts = set(EXAMPLE_SCHEMA.names) - {"t", "split", "example"}, []
    for split, columns in examples.items():
        lengths = {name: len(values) for name, values in columns.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"examples of split {split!r}: columns of different lengths {lengths}")
        if set(columns) - known:
            raise ValueError(f"examples have no columns {sorted(set(columns) - known)}: declare them in "
                             f"mcu_ray.tables.EXAMPLE_COLUMNS")
        n = next(iter(lengths.values()))
        given = {"t": np.full(n, t), "split": [split] * n, "example": np.arange(n), **columns}
        parts.append(pa.Table.from_arrays([pa.array(given[f.name], f.type, from_pandas=f.name != "t")
                                           if f.name in given else pa.nulls(n, f.type)
                                           for f in EXAMPLE_SCHEMA], schema=EXAMPLE_SCHEMA))
    return pa.concat_tables(parts) if parts else EXAMPLE_SCHEMA.empty_table()


def write_examples(store: Store, sweep: str, parts: list[tuple[dict, pa.Table]], key: str) -> None:
    """One file of the examples table: each part a model point's values (``EXAMPLE_SCHEMA``) under its
    identity (the constants of its rows: model, key, t, provenance ...; over the values' own ``t``)."""
    schema, tables = SCHEMAS["examples"], []
    for constants, values in parts:
        unknown = sorted(set(constants) - set(schema.names))
        if unknown:
            raise ValueError(f"table 'examples' has no columns {unknown}: declare them in mcu_ray.tables")
        n = values.num_rows
        tables.append(pa.Table.from_arrays(
            [pa.repeat(pa.scalar(constants[f.name], f.type), n) if f.name in constants
             else values[f.name].cast(f.type) if f.name in values.column_names else pa.nulls(n, f.type)
             for f in schema], schema=schema))
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    # t as the results table rounds it, so that the two join on it
    table = table.set_column(schema.get_field_index("t"), "t", pc.round(table["t"], 6))
    store.write_table(table, sweep, "examples", key)


def read_table(store: Store, sweep: str, name: str) -> pa.Table:
    """Every row of table ``name`` in its schema (zero rows when it has no file yet).

    Files written before the flat layout (``task=../setting=..`` folders, task columns inside,
    verdict columns) are read too: conformed to the schema, extra columns dropped.
    """
    paths = store.table_files(sweep, name)
    if not paths:
        return SCHEMAS[name].empty_table()
    return ds.dataset(paths, schema=SCHEMAS[name], format="parquet", filesystem=store.fs).to_table()


def upgrade_layout(store: Store, sweep: str) -> int:
    """Rewrite a sweep's table files of the hive layout (``task=../setting=../<key>.parquet``) as
    ``<key>.parquet`` in the table's schema, so a rerun finds its cells done and every reader sees
    one schema; returns the number of files moved."""
    moved = 0
    for name in TABLES:
        for path in store.table_files(sweep, name):
            folder, file = path.rsplit("/", 1)
            if "=" not in folder.rsplit("/", 1)[1]:
                continue
            table = ds.dataset([path], schema=SCHEMAS[name], format="parquet", filesystem=store.fs).to_table()
            store.write_table(table, sweep, name, file[:-len(".parquet")])
            store.fs.delete_file(path)
            moved += 1
    for name in TABLES if moved else ():
        store.delete_empty_dirs(sweep, name)
    return moved


# ----------------------------------------------------------------------------- verdicts
def tolerances_of(store: Store, sweep: str, tolerance=None) -> Tolerances:
    """The sweep file's tolerances (its ``spec.json``; defaults without one), with ``tolerance``
    over them: a number replaces the loss tolerance, a mapping the families it names."""
    stored = {}
    if store.exists(sweep, "spec.json"):
        stored = json.loads(store.read_bytes(sweep, "spec.json")).get("spec", {}).get("tolerance", {})
    base = parse_tolerance(stored if stored is not None else {}, "spec.json: tolerance")
    if tolerance is None:
        return base
    if isinstance(tolerance, Tolerances):
        return tolerance
    if isinstance(tolerance, dict):
        return parse_tolerance({**dataclasses.asdict(base), **tolerance}, "tolerance")
    return dataclasses.replace(base, loss=parse_tolerance(tolerance, "tolerance").loss)


def with_barriers(barriers: pd.DataFrame, tolerances: Tolerances) -> pd.DataFrame:
    """The barriers table with each row's metric family, its tolerance and the ``barrier`` flag."""
    family = barriers["metric"].map(lambda m: METRICS[m].family if m in METRICS else None)
    tolerance = barriers["metric"].map(
        lambda m: getattr(tolerances, METRICS[m].family) * METRICS[m].tolerance_scale if m in METRICS else np.nan
    ).astype(float)
    flags = pd.Series(pd.NA, index=barriers.index, dtype="boolean")
    for name in family.dropna().unique():
        rows = family == name
        flags[rows] = barrier(name, tolerance[rows].to_numpy(), *(barriers.loc[rows, c].to_numpy(float)
                                                                   for c in ("deviation", "min", "start", "end")))
    failed = (barriers["status"] != "ok") | barriers["deviation"].isna() | family.isna()
    flags[failed] = pd.NA
    return barriers.assign(family=family, tolerance=tolerance, barrier=flags)


def verdicts(barriers: pd.DataFrame, tolerances: Tolerances) -> pd.DataFrame:
    """One row per (cell, curve) of a barriers frame: B_r, B_f and the MCU verdict at the loss tolerance."""
    def loss_of(side: str) -> pd.DataFrame:
        name = barriers["task"].map(lambda t: getattr(TASKS[t], side) if t in TASKS else side)
        return barriers[barriers["metric"] == name]

    forget = loss_of("forget_loss")[["cell_id", "curve", "deviation"]].rename(columns={"deviation": "forget_barrier"})
    out = (loss_of("retain_loss").rename(columns={"deviation": "retain_barrier"})
           .merge(forget, on=["cell_id", "curve"], how="left").reset_index(drop=True))
    out["tolerance"] = tolerances.loss
    failed = (out["status"] != "ok") | out["retain_barrier"].isna() | out["forget_barrier"].isna()
    holds = (out["retain_barrier"] <= tolerances.loss) & (out["forget_barrier"] <= tolerances.loss)
    out["mcu"] = pd.Series(holds, dtype="boolean").mask(failed)
    return out[[c.name for c in DERIVED["verdicts"] if c.name in out.columns]]  # a frame of some columns too


# ----------------------------------------------------------------------------- the public reader
def load(storage: str, sweep: str, table: str = "results", tolerance=None) -> pd.DataFrame:
    """Every row and every column of one table of ``<storage>/<sweep>`` as a pandas DataFrame.

    ``table``: results | barriers | references | pathway | examples (stored), or verdicts (one row per
    curve, computed here). ``tolerance`` (barriers, verdicts): a number for the loss tolerance
    or a mapping per metric family (``spec.Tolerances``), over the sweep file's; None: the
    sweep file's. Rows of cells an edited sweep file dropped are included (the report hides them).
    """
    if table not in (*TABLES, "verdicts"):
        raise ValueError(f"unknown table {table!r}; tables: {', '.join([*TABLES, 'verdicts'])}")
    store = Store(storage)
    frame = read_table(store, sweep, "barriers" if table == "verdicts" else table).to_pandas()
    if table not in ("barriers", "verdicts"):
        return frame
    tolerances = tolerances_of(store, sweep, tolerance)
    return verdicts(frame, tolerances) if table == "verdicts" else with_barriers(frame, tolerances)


# ----------------------------------------------------------------------------- the data dictionary
def _type_name(tp: pa.DataType) -> str:
    return {STRING: "string", FLOAT: "float64", INT: "int64", pa.bool_(): "bool"}.get(tp, str(tp))


def _cell(text: str) -> str:
    """Text inside a Markdown table cell: a '|' would end the cell."""
    return text.replace("|", "\\|")


def _column_rows(columns, metrics: set) -> list[str]:
    rows = []
    for c in columns:
        if c.name in metrics:
            continue
        rows.append(f"| `{c.name}` | {_type_name(c.type)} | {c.unit} | {_cell(c.meaning)} |")
    return rows


def data_dictionary() -> str:
    """docs/tables.md: every table, every column, its type, unit and meaning; every metric's family,
    unit, range, direction, meaning and source."""
    metrics = metric_names()
    arrows = {+1: "↑ higher is better", -1: "↓ lower is better"}
    tolerance = Tolerances()
    lines = [
        "# Result tables: the data dictionary",
        "",
        "Generated by `python -m mcu_ray.tables > docs/tables.md` from `mcu_ray/tables.py`, which owns every",
        "table's schema (a test checks that this file is current).",
        "",
        "Each table is a folder of Parquet files, `<storage>/<sweep>/<table>/<key>.parquet`: one file per cell",
        "(results, barriers) or per model (references, pathway, examples), no hive folders. Every file holds every",
        "column of its table, so any reader loads a folder, a glob or one file alike:",
        "",
        "```python",
        "import pandas as pd, duckdb, mcu_ray",
        'pd.read_parquet("mcu_runs/quickstart/results")',
        "duckdb.sql(\"SELECT * FROM read_parquet('mcu_runs/quickstart/results/*.parquet')\").df()",
        'mcu_ray.load("mcu_runs", "quickstart", "results")          # the same DataFrame',
        'mcu_ray.load("mcu_runs", "quickstart", "verdicts", tolerance=0.05)   # one row per curve',
        "```",
        "",
        "Units: the forget `ratio` is a percentage (10 = 10 % of D); accuracies, scores and probabilities are",
        "fractions in [0, 1]; losses are in nats; `t` runs from 0 (endpoint 1) to 1 (endpoint 2). A metric",
        "column a task does not compute is null on that task's rows; a failed (diverged) model's numbers are",
        "NaN with `status` = diverged.",
        "",
    ]
    for name, columns in TABLES.items():
        lines += [f"## `{name}`: {ROWS[name]}", "", "| column | type | unit | meaning |", "|---|---|---|---|",
                  *_column_rows(columns, set(metrics))]
        if any(c.name in metrics for c in columns):
            lines.append("| *every metric below* | float64 | see below | the model's value of that metric |")
        lines.append("")
    lines += [
        "The `examples` table holds what the metrics are computed from, one row per example of each",
        "evaluation split, from the same forward passes as the metrics. Its files: `<endpoint key>.parquet`",
        "(model endpoint), `<retrained key>.parquet` (the original and the retrained model at that ratio, as",
        "in `references`) and, when the sweep ran with `--per-example`, `<curve key>.parquet`: every evaluated",
        "point of the curve, t = 0 and 1 being its endpoints' own rows. `(split, example)` names one row of",
        "the data at every model point of a task and ratio, so a join across `t` follows each example along",
        "a curve; `(task, ratio, split, example)` joins a curve's rows with the retrained model's. The",
        "values stay in the artifacts (`artifacts/<key>/examples.parquet`; a curve's interior points",
        "under `examples-<hash>`); the table files copy them per sweep. A failed model or curve, or a model",
        "stored by an mcu_ray that kept no per-example values, has a file of no rows.",
        "",
        "## `verdicts` and the `barrier` flag: computed when loaded, never stored",
        "",
        "Only deviations are stored. `mcu_ray.load(storage, sweep, \"barriers\", tolerance=...)` adds to each",
        "barriers row (the report does the same):",
        "",
        "| column | type | unit | meaning |", "|---|---|---|---|", *_column_rows(DERIVED["barriers"], set()), "",
        "and `mcu_ray.load(storage, sweep, \"verdicts\", tolerance=...)` gives one row per cell and curve:",
        "",
        "| column | type | unit | meaning |", "|---|---|---|---|",
        "| *`sweep` ... `curve_key`* | | | as in `barriers` |",
        *_column_rows(DERIVED["verdicts"][len(PROVENANCE) + len(CELL):], set()), "",
        "`tolerance` is a number (the loss tolerance) or a mapping per family, over the sweep file's",
        "`tolerance` (read from `<storage>/<sweep>/spec.json`); `python -m mcu_ray.report` takes the same",
        "(`--tolerance 0.05 --tolerance accuracy=0.02`). Changing it re-decides every curve and runs nothing.",
        "",
        "| family | default tolerance | rule |", "|---|---|---|",
        f"| loss | {tolerance.loss:g} nats | deviation > tolerance; the MCU verdict uses this one |",
        f"| accuracy | {tolerance.accuracy:g} (absolute) | deviation > tolerance (0.01 = 1 percentage point) |",
        f"| score | {tolerance.score:g} (absolute) | deviation > tolerance (PrivLeak, in percent: deviation > "
        f"100 x tolerance) |",
        f"| forget_quality | {tolerance.forget_quality:g} (significance level) | the curve's lowest Forget Quality "
        f"is below it while both endpoints are at or above it (a p-value's size carries no more) |",
        "",
        "## Metrics",
        "",
        "Declared once in `mcu_ray/metrics.py` (the metric registry), which this table prints. Direction: which",
        "way is better for an unlearned model; the barriers table's `deviation` is signed with it so that",
        "positive is always bad. Range: the values the metric can take.",
        "",
        "| metric | tasks | family | unit | range | direction | meaning | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        info = METRICS[m]
        low, high = (f"{b:g}".replace("inf", "∞") for b in info.bounds)
        lines.append(f"| `{m}` | {', '.join(metric_tasks(m))} | {info.family} | {info.unit} | [{low}, {high}] | "
                     f"{arrows[direction(m)]} | {_cell(info.definition)} | {_cell(info.source)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(data_dictionary())
