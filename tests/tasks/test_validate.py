"""``Task.validate``, the validation view hyper-parameter search scores on: data the report never
scores, every gap metric present. Checked against numbers computed here from the rows and the
model's own logits with the sources' formulas (no Ray)."""
from dataclasses import replace

import functools
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from rouge_score import rouge_scorer
from scipy.stats import hmean
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from mcu_ray.errors import SpecError
from mcu_ray.placement import Placement
from mcu_ray.tasks import TASKS
from mcu_ray.tasks.tofu_data import load_config, tofu_rows
from mcu_ray.train import train_supervised
from tests.helpers import write_hub_folder

CPU = Placement("cpu")
DIGITS, TOFU = TASKS["digits"], TASKS["tofu"]
PATH = "tasks[0].options"


# ----------------------------------------------------------------------------- classification


@pytest.fixture(scope="module")
def digits():
    """A digits model trained 2 epochs on D (options, data at 10 %, model, ZRF's context)."""
    torch.set_num_threads(1)
    options = DIGITS.Options(width=4)
    data = DIGITS.load(options, 10)
    model = DIGITS.new_model(options, seed=0, placement=CPU)
    train_supervised(model, DIGITS, data.split("train"), epochs=2, lr=3e-3, batch_size=64, weight_decay=0,
                     seed=0, placement=CPU)
    return options, data, model, DIGITS.eval_context(options, data, None, CPU)


def test_classification_validate_reads_the_validation_rows_in_place_of_test(digits):
    """acc_test is the argmax accuracy on exactly the validation rows and mia_loss the ROC AUC of the
    cross-entropy, Df against those rows (open-unlearning's loss attack); Df, Dr and ZRF are evaluate's.
    BatchNorm statistics are spoilt first: validate must re-estimate them on Dr as evaluate does."""
    options, data, model, context = digits
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.fill_(3.0)
    validated = DIGITS.validate(model, options, data, context, CPU)
    evaluated = DIGITS.evaluate(model, options, data, context, CPU)
    assert type(validated) is dict and set(validated) == set(evaluated) >= set(DIGITS.gap_metrics)
    for name in ("acc_forget", "acc_retain", "loss_forget", "loss_retain", "zrf"):
        assert validated[name] == evaluated[name], name
    model.eval()
    with torch.no_grad():
        logits = {name: model(data.split(name)["x"]).double() for name in ("validation", "forget")}
    labels = {name: data.split(name)["y"] for name in logits}
    correct = (logits["validation"].argmax(-1) == labels["validation"]).double()
    assert len(correct) == round(0.1 * len(data.train["y"]))
    assert validated["acc_test"] == pytest.approx(float(correct.mean()), abs=1e-7)  # a float32 mean
    losses = {name: F.cross_entropy(logits[name], labels[name], reduction="none").numpy() for name in logits}
    assert validated["mia_loss"] == pytest.approx(roc_auc_score(  # forget labelled 0, held-out 1
        np.r_[np.zeros(len(losses["forget"])), np.ones(len(losses["validation"]))],
        np.r_[losses["forget"], losses["validation"]]), abs=1e-9)


def test_classification_validation_rows_are_outside_test_and_every_forget_set(digits):
    """Validation rows are training rows of the dataset (never in sklearn's test split) and outside
    the forget set of every ratio."""
    opts, data, _, _ = digits
    target = load_digits().target
    idx_train, idx_test = train_test_split(range(len(target)), test_size=opts.test_fraction,
                                           random_state=opts.split_seed, stratify=target)  # digits.load_arrays'
    validation = data.validation_idx.tolist()
    assert validation and set(np.asarray(idx_train)[validation]).isdisjoint(idx_test)
    for ratio in (2, 10, 30):
        assert set(validation).isdisjoint(DIGITS.load(opts, ratio).forget_idx.tolist()), ratio


def test_classification_validate_needs_val_fraction():
    options = DIGITS.Options(width=4, val_fraction=0.0)
    with pytest.raises(SpecError, match=r"tasks\[0\].options.val_fraction: got 0.0; .*val_fraction > 0") as error:
        DIGITS.check_validation(options, PATH)
    assert error.value.path == f"{PATH}.val_fraction"
    DIGITS.check_validation(replace(options, val_fraction=0.1), PATH)  # passes
    with pytest.raises(ValueError, match="val_fraction"):
        DIGITS.validate(None, options, DIGITS.load(options, 10), None, CPU)


@pytest.mark.parametrize("name", ["cifar10", "ddi", "nlvr2"])
def test_mubench_validate_returns_the_gap_metrics(tmp_path, name):
    """MU-Bench's tasks validate through the same ClassificationTask code: every gap metric, as floats,
    acc_test the accuracy of the validation rows (10 % of 60 training rows: a multiple of 1/6)."""
    torch.set_num_threads(1)
    task = TASKS[name]
    options = task.Options(dataset=str(write_hub_folder(tmp_path, name, n_train=60, n_test=8)), image_size=16,
                           max_length=12, vocab_size=300, hidden_size=16)
    data = task.load(options, 10)
    model = task.new_model(options, seed=0, placement=CPU)
    validated = task.validate(model, options, data, task.eval_context(options, data, None, CPU), CPU)
    assert set(task.gap_metrics) <= set(validated) and all(isinstance(v, float) for v in validated.values())
    assert len(data.validation_idx) == 6
    assert validated["acc_test"] * 6 == pytest.approx(round(validated["acc_test"] * 6), abs=1e-6)  # float32


# ----------------------------------------------------------------------------- TOFU


def test_tofu_validation_rows_on_real_tofu(tofu_dir):
    """On TOFU's own configs: 300 rows of Dr, none in retain_perturbed (what the report's retain set
    reads), a forget set or the held-out authors; the same rows at forget01, 05 and 10; one or two per
    author over every author of Dr that retain_perturbed leaves out (TOFU's authors 20-179)."""
    load = functools.lru_cache()(lambda name: load_config("local", name, path=str(tofu_dir)))
    questions = {name: {r["question"] for r in load(name)}
                 for name in ("retain_perturbed", "forget10_perturbed", "holdout10")}
    author = {r["question"]: i // 20 for i, r in enumerate(load("full"))}
    validation = []
    for ratio in (1, 5, 10):
        rows = tofu_rows(load, ratio, retain_authors=0, max_ratio=10, eval_size=300)
        validation.append([r["question"] for r in rows.validation])
        retain = {r["question"] for r in rows.retain}
        assert set(validation[-1]) <= retain and not set(validation[-1]) & set().union(*questions.values())
    assert validation[0] == validation[1] == validation[2] and len(set(validation[0])) == 300
    per_author = Counter(author[q] for q in validation[0])
    assert set(per_author) == set(range(20, 180)) and set(per_author.values()) == {1, 2}
    # a subset of TOFU's first 10 authors: retain_perturbed holds all of Dr, nothing is left to validate on
    assert tofu_rows(load, 1, retain_authors=10, max_ratio=1, eval_size=300).validation == []
    options = TOFU.Options(source="local", path=str(tofu_dir), retain_authors=10, max_ratio=1)
    with pytest.raises(SpecError, match="retain_perturbed") as error:
        TOFU.check_validation(options, PATH)
    assert error.value.path == f"{PATH}.retain_authors"


TOFU_OPTIONS = {"synthetic_authors": 25, "eval_size": 20, "n_embd": 32, "n_layer": 1, "n_head": 2,
                "vocab_size": 400, "max_new_tokens": 12}  # 25 authors: 3 of Dr outside retain_perturbed's 20


@pytest.fixture(scope="module")
def tofu():
    """A tiny GPT-2 trained 6 epochs on synthetic D (25 authors, forget10 = the last 2), and a context
    from another (untrained) model standing in for the retrained one."""
    torch.set_num_threads(1)
    options = TOFU.Options(**TOFU_OPTIONS)
    data = TOFU.load(options, 10)
    model = TOFU.new_model(options, seed=0, placement=CPU)
    train_supervised(model, TOFU, data.split("train"), epochs=6, lr=3e-3, batch_size=16, weight_decay=0, seed=0,
                     placement=CPU)
    context = TOFU.eval_context(options, data, TOFU.new_model(options, seed=1).state_dict(), CPU)
    return options, data, model, context


def own_answer_nlls(model, data, rows) -> list[np.ndarray]:
    """Each row alone (no padding): prompt + answer + EOS tokenised here, the answer tokens' NLL read off
    the float64 log-softmax of the logits one position before each token."""
    tok, opts = data.tokenizer, data.options
    out = []
    for row in rows:
        prompt = tok(opts.question_template.format(question=row["question"]), add_special_tokens=False)["input_ids"]
        answer = tok(opts.answer_template.format(answer=row["answer"]), add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + answer + [tok.eos_token_id]])
        with torch.no_grad():
            log_p = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)  # (len, vocab)
        positions = torch.arange(len(prompt) - 1, ids.shape[1] - 1)  # position i predicts token i + 1
        out.append(-log_p[positions, ids[0, positions + 1]].numpy())
    return out


def own_rouge_recalls(model, data, rows) -> list[float]:
    """Greedy answers generated one row at a time, scored with rouge_score (ROUGE-L recall, stemmer on)."""
    tok, opts = data.tokenizer, data.options
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    recalls = []
    for row in rows:
        ids = tok(opts.question_template.format(question=row["question"]), add_special_tokens=False,
                  return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=opts.max_new_tokens,
                                 do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        generated = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
        recalls.append(scorer.score(row["answer"], generated)["rougeL"].recall)
    return recalls


def test_tofu_validation_rows_are_unscored_rows_of_dr(tofu):
    """eval_size rows of Dr, none the report scores (retain_perturbed, forget) nor a held-out author's,
    spread over the 3 authors of Dr that retain_perturbed leaves out (authors 20-22)."""
    options, data, _, _ = tofu
    rows = data.rows.validation
    questions = [r["question"] for r in rows]
    assert len(set(questions)) == 20 and all(r in data.rows.retain for r in rows)
    perturbed = load_config("synthetic", "retain_perturbed", synthetic_authors=25)
    for other in (perturbed, data.rows.retain_eval, data.rows.forget, data.split_rows("holdout")):
        assert set(questions).isdisjoint(r["question"] for r in other)
    author = {r["question"]: i // 20 for i, r in enumerate(load_config("synthetic", "full", synthetic_authors=25))}
    assert sorted(Counter(author[q] for q in questions).values()) == [6, 7, 7]
    assert TOFU.load(options, 10).rows.validation == rows  # loaded again: the same rows


def test_tofu_validate_computes_retain_metrics_on_the_validation_rows(tofu):
    """prob_retain is the mean of exp(-token-mean answer NLL), loss_retain that NLL's mean, rouge_retain
    the mean ROUGE-L recall of greedy answers, all on the validation rows and recomputed here row by row;
    model_utility their harmonic mean (scipy); the forget-side metrics are evaluate's."""
    options, data, model, context = tofu
    validated = TOFU.validate(model, options, data, context, CPU)
    evaluated = TOFU.evaluate(model, options, data, context, CPU)
    assert type(validated) is dict and set(TOFU.gap_metrics) <= set(validated)
    for name in ("forget_quality", "prob_forget", "truth_ratio_forget", "loss_forget", "rouge_forget"):
        assert validated[name] == evaluated[name], name
    nlls = [row.mean() for row in own_answer_nlls(model, data, data.rows.validation)]
    assert validated["prob_retain"] == pytest.approx(np.mean(np.exp(-np.array(nlls))), rel=1e-5)
    assert validated["loss_retain"] == pytest.approx(np.mean(nlls), rel=1e-5)
    rouge = np.mean(own_rouge_recalls(model, data, data.rows.validation))
    assert 0 < validated["rouge_retain"] == pytest.approx(rouge, abs=1e-9)
    assert validated["model_utility"] == pytest.approx(hmean([validated["prob_retain"], rouge]), rel=1e-9)
    assert validated["prob_retain"] != evaluated["prob_retain"]  # other rows than the report's retain set


def test_tofu_validate_needs_rows_outside_retain_perturbed():
    """20 synthetic authors: retain_perturbed holds all of them (as TOFU's holds its first 20)."""
    options = TOFU.Options(**{**TOFU_OPTIONS, "synthetic_authors": 20})
    with pytest.raises(SpecError, match="retain_perturbed") as error:
        TOFU.check_validation(options, PATH)
    assert error.value.path == f"{PATH}.synthetic_authors"
    TOFU.check_validation(TOFU.Options(**TOFU_OPTIONS), PATH)  # 25 authors: passes
    with pytest.raises(ValueError, match="no validation rows"):
        TOFU.validate(None, options, TOFU.load(options, 10), None, CPU)
