"""TOFU's task: its options' checks, tiny-model training and the metric invariants (no Ray); its data
sources are tests/tasks/test_tofu_data.py's."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from rouge_score import rouge_scorer
from scipy.stats import hmean, ks_2samp
from sklearn.metrics import roc_auc_score

from mcu_ray import jobs
from mcu_ray.errors import SpecError
from mcu_ray.methods import METHODS
from mcu_ray.placement import Placement
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.store import Store
from mcu_ray.tables import example_table
from mcu_ray.tasks.tofu import (TASK, encode_pairs, eval_rows, generate_answers, membership_scores, rouge_recall,
                               split_losses)
from mcu_ray.train import train_supervised, unlearn

def tofu_spec(**options):
    return parse_spec({"name": "t", "settings": ["Met"], "points": 3, "tasks": [{
        "name": "tofu", "ratios": [10], "methods": ["gd", "npo"],
        "options": {"synthetic_authors": 10, "eval_size": 20, "n_embd": 64, "n_layer": 2, "vocab_size": 800,
                    "epochs": 30, "max_new_tokens": 24, **options}}]})


def test_spec_checks_tofu_inputs(tmp_path):
    with pytest.raises(SpecError, match=r"tasks\[0\].options.path"):
        tofu_spec(source="local", path=str(tmp_path))
    with pytest.raises(SpecError, match=r"tasks\[0\].ratios\[0\]: got 10; .*max_ratio"):
        tofu_spec(retain_authors=5, max_ratio=5)


@pytest.fixture(scope="module")
def tofu_store(tmp_path_factory):
    torch.set_num_threads(1)
    plan = make_plan(tofu_spec())
    store = Store(str(tmp_path_factory.mktemp("tofu")))
    for item in [*plan.originals.values(), *plan.retrained.values()]:
        (jobs.build_original if item.key.startswith("orig") else jobs.build_retrained)(store, item)
    for endpoint in plan.endpoints.values():
        jobs.build_endpoint(store, endpoint)
    return plan, store


def test_reference_compared_with_itself_has_forget_quality_one(tofu_store):
    plan, store = tofu_store
    key = next(iter(plan.retrained))
    metrics = store.read_meta(key)["metrics"]
    assert metrics["forget_quality"] == pytest.approx(1.0)
    assert metrics["privleak"] == 0.0  # PrivLeak is relative to the retrained model's own attack AUC
    assert set(metrics) == set(TASK.metric_directions)
    examples = store.load_examples(key).to_pandas()  # Model Utility and the rest, from its own stored rows
    assert_gives_tofu_metrics(metrics, examples, examples)


def test_unlearning_lowers_forget_rouge(tofu_store):
    plan, store = tofu_store
    original = jobs.original_metrics(store, next(iter(plan.originals.values())), next(iter(plan.retrained.values())))
    assert original["rouge_forget"] > 0.8  # the fine-tuned model has memorised the forget answers
    for endpoint in plan.endpoints.values():
        after = store.read_meta(endpoint.key)["metrics"]
        assert after["rouge_forget"] < original["rouge_forget"] - 0.2, endpoint.method
        assert after["loss_forget"] > original["loss_forget"], endpoint.method


def open_unlearning_attack_scores(model, batch: dict) -> tuple[list, list]:
    """Each row of a tokenised batch run alone (no padding), scored as open-unlearning scores it: the LOSS
    attack's summed answer-token NLL over the number of labelled tokens (utils.py:82-103, evaluate_probability),
    and Min-K% Prob over the log-probabilities of the labelled tokens but the last (utils.py:106-146,
    tokenwise_logprobs): minus the mean of the lowest max(1, int(0.4 n)) (min_k.py:19-26)."""
    loss, min_k = [], []
    for i in range(len(batch["input_ids"])):
        n = int(batch["attention_mask"][i].sum())
        input_ids, labels = batch["input_ids"][i:i + 1, :n], batch["labels"][i:i + 1, :n]
        with torch.no_grad():
            logits = model(input_ids=input_ids).logits.double()  # (1, n, vocab)
        summed = torch.nn.functional.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100, reduction="sum")
        loss.append(float(summed / (labels != -100).sum()))
        target = torch.log_softmax(logits, -1)[0, :-1].gather(1, input_ids[0, 1:, None])[:, 0]  # log p(token j+1)
        actual = (labels[0] != -100).nonzero()[:, 0][:-1]  # -1 to ignore eos prediction
        logprobs = np.sort(target[actual[0] - 1:actual[-1]].numpy())
        min_k.append(float(-logprobs[:max(1, int(len(logprobs) * 0.4))].mean()))
    return loss, min_k


def test_membership_attacks_and_privleak_follow_open_unlearning(tofu_store):
    """The original's loss and Min-K% attack AUCs (forget set vs held-out authors) and its PrivLeak against
    the retrained model, recomputed here from each row's logits with open-unlearning's formulas."""
    plan, store = tofu_store
    original, retrained = next(iter(plan.originals.values())), next(iter(plan.retrained.values()))
    metrics = jobs.original_metrics(store, original, retrained)
    options = original.options
    task, data = jobs.task_data("tofu", options, retrained.ratio)
    auc = {}
    for name, key in (("original", original.key), ("retrained", retrained.key)):
        model = task.new_model(options, seed=0).eval()
        model.load_state_dict(store.load_weights(key))
        forget, holdout = (open_unlearning_attack_scores(model, data.split(s)) for s in ("forget", "holdout"))
        labels = [0] * len(forget[0]) + [1] * len(holdout[0])  # mia/utils.py:64-68: forget 0, holdout 1
        auc[name] = {attack: roc_auc_score(labels, forget[i] + holdout[i])
                     for i, attack in enumerate(("mia_loss", "mia_min_k"))}
    assert len(data.split("holdout")["input_ids"]) == len(data.rows.forget)  # holdoutXX: as many rows as Df
    stored = {"original": metrics, "retrained": store.read_meta(retrained.key)["metrics"]}
    for name in stored:
        for attack in ("mia_loss", "mia_min_k"):
            assert stored[name][attack] == pytest.approx(auc[name][attack], abs=1e-9), (name, attack)
    score, reference = 1 - auc["original"]["mia_min_k"], 1 - auc["retrained"]["mia_min_k"]  # privacy.py:50-52
    assert metrics["privleak"] == pytest.approx((score - reference) / (reference + 1e-10) * 100, abs=1e-6)
    assert metrics["mia_min_k"] > 0.9 and metrics["privleak"] < -50  # the original memorised its forget set
    # 20 forget vs 20 held-out rows, neither trained on: near 0.5 (the held-out names are in the tokenizer too)
    assert abs(auc["retrained"]["mia_min_k"] - 0.5) < 0.2 and abs(auc["retrained"]["mia_loss"] - 0.5) < 0.2


def test_perfect_memorisation_gives_forget_rouge_one(tofu_store):
    """Fine-tune until the forget answers come back verbatim: ROUGE-L recall is exactly 1."""
    plan, store = tofu_store
    options = next(iter(plan.originals.values())).options
    task, data = jobs.task_data("tofu", options, 10)
    model = task.new_model(options, seed=0)
    model.load_state_dict(store.load_weights(next(iter(plan.originals))))
    rows = data.rows.forget_eval[:4]
    batch = data.split("forget")
    batch = {k: v[:4] for k, v in batch.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(200):
        loss = task.example_losses(model, batch).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 1e-3:
            break
    # the four memorised rows as the evaluated forget set (a copy: the cached splits stay as they are)
    data = dataclasses.replace(data, rows=dataclasses.replace(data.rows, forget_eval=rows), encoded={})
    assert generate_answers(model, data, "forget", Placement("cpu")) == [r["answer"] for r in rows]
    assert rouge_recall(model, data, "forget", Placement("cpu")) == pytest.approx(1.0)


def test_lora_endpoints_are_adapters_over_a_frozen_base(tmp_path):
    """With lora_rank > 0 only adapters train and are stored; curves interpolate adapters."""
    torch.set_num_threads(1)
    spec = tofu_spec(lora_rank=4, epochs=2)
    plan = make_plan(spec)
    store = Store(str(tmp_path))
    jobs.build_original(store, next(iter(plan.originals.values())))
    jobs.build_retrained(store, next(iter(plan.retrained.values())))
    endpoint = next(iter(plan.endpoints.values()))
    jobs.build_endpoint(store, endpoint)
    weights = store.load_weights(endpoint.key)
    assert weights and all("lora_" in name for name in weights)  # adapters only: the base is not copied
    original = store.load_weights(endpoint.original)
    assert any(not torch.equal(weights[n], original[n]) for n in weights)  # unlearning moved the adapters
    curve = next(c for c in plan.curves.values() if c.trained)
    for key in (curve.endpoint_1, curve.endpoint_2):
        if not store.has_artifact(key):
            jobs.build_endpoint(store, plan.endpoints[key])
    jobs.build_bend(store, curve)
    bend, = jobs.unpack_bends(store.load_weights(jobs.bend_key(curve)), 1)
    assert set(bend) == set(weights)  # the bend lives in adapter space
    rows = jobs.evaluate_curve_serially(store, curve)
    assert len(rows) == 1
    retrained = store.load_examples(curve.retrained).to_pandas()
    assert rows[0]["forget_quality"] == pytest.approx(
        forget_quality(example_table(rows[0].examples).to_pandas(), retrained), rel=1e-9)


def test_so_and_cl_endpoints_on_tofu(tmp_path):
    """The SO and CL variants run on the language-model task too (all 10 settings need them)."""
    torch.set_num_threads(1)
    spec = parse_spec({"name": "t", "settings": ["FO-SO", "CL-Non-CL"], "points": 3, "tasks": [{
        "name": "tofu", "ratios": [10], "methods": ["npo", "rl"],
        "options": {"synthetic_authors": 5, "eval_size": 8, "n_embd": 32, "n_layer": 1, "vocab_size": 400,
                    "epochs": 3, "max_new_tokens": 8},
        "hparams": {"npo": {"epochs": 1}, "rl": {"epochs": 1, "cl": {"kind": "hard_to_easy"}}}}]})
    plan = make_plan(spec)
    store = Store(str(tmp_path))
    jobs.build_original(store, next(iter(plan.originals.values())))
    jobs.build_retrained(store, next(iter(plan.retrained.values())))
    variants, retrained = set(), store.load_examples(next(iter(plan.retrained))).to_pandas()
    for endpoint in plan.endpoints.values():
        meta = jobs.build_endpoint(store, endpoint)
        assert meta["train_log"]["steps"] > 0
        assert meta["metrics"]["forget_quality"] == pytest.approx(
            forget_quality(store.load_examples(endpoint.key).to_pandas(), retrained), rel=1e-9)
        variants.add((endpoint.method, endpoint.optimizer, endpoint.curriculum))
    assert variants == {(m, o, c) for m in ("npo", "rl") for o, c in (("fo", "none"), ("so", "none"), ("fo", "cl"))}


def test_real_tofu_batches_pad_little_and_give_the_unpadded_numbers(tofu_dir):
    """Real TOFU (forget01, 10 retain authors): training and evaluation batches are grouped by
    length and trimmed, so padded tokens are at most 1.25x the real ones; every answer loss and
    every greedy answer equals the one computed for that row alone, with no padding at all."""
    torch.set_num_threads(2)
    options = TASK.Options(source="local", path=str(tofu_dir), retain_authors=10, max_ratio=1,
                                              eval_size=40, n_layer=1, n_embd=64, vocab_size=1000,
                                              max_new_tokens=8, eval_batch_size=16)
    data, placement = TASK.load(options, 1), Placement("cpu")
    model = TASK.new_model(options, seed=0)
    log = train_supervised(model, TASK, data.split("train"), epochs=1, lr=1e-3, batch_size=16, weight_decay=0,
                           seed=0, placement=placement)
    assert log["padding_ratio"] <= 1.25
    forget = unlearn(model, TASK, data, "gd", METHODS["gd"].Params(steps=5, batch_size=8, retain_batch_size=8),
                     seed=0, placement=placement)
    assert forget["padding_ratio"] <= 1.25

    batched = split_losses(model, data, "retain", placement)
    rows = data.rows.retain_eval
    with torch.no_grad():
        alone = [float(TASK.example_losses(model.eval(), encode_pairs(data.tokenizer, data.options,
                                                                        [(r["question"], a)])))
                 for r in rows[:10] for a in (r["answer"], r["paraphrased_answer"])]
    assert np.allclose(np.stack([batched["answer"][:10], batched["paraphrased"][:10]], 1).ravel(), alone, atol=1e-5)
    answers = generate_answers(model, data, "forget", placement)
    one_row = dataclasses.replace(data, options=dataclasses.replace(data.options, eval_batch_size=1), encoded={})
    assert answers == generate_answers(model, one_row, "forget", placement)
    TASK.evaluate(model, options, data, TASK.eval_context(options, data, model.state_dict(), placement), placement)
    assert data.eval_padding_ratio() <= 1.25


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA")])])
@pytest.mark.parametrize("model, lora_rank", [("tiny-gpt2", 0), ("tiny-gpt2", 4), ("tiny-llama", 0),
                                             ("tiny-phi", 0)])
def test_answer_losses_share_each_question_and_equal_tofus_loss(model, lora_rank, device):
    """Each question runs once and its answers on top of its KV cache (one answer: both in one pass);
    every answer's loss is TOFU's loss of that (question, answer) pair alone: the mean of -log softmax
    of the model's logits over the unpadded question + answer, at the positions before each answer
    token. Left-padded prompts and right-padded answers of other lengths share each batch."""
    torch.manual_seed(0)
    options = TASK.Options(synthetic_authors=4, eval_size=6, model=model, n_layer=2, n_embd=32, n_head=2,
                           vocab_size=600, lora_rank=lora_rank, eval_batch_size=10)
    data, placement = TASK.load(options, 10), Placement(device)
    net = TASK.new_model(options, seed=0, placement=placement).eval()
    with torch.no_grad():  # adapters away from B = 0, so that they change what the model computes
        for name, param in net.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)

    def tofu_loss(question: str, answer: str) -> float:
        prompt = data.tokenizer(options.question_template.format(question=question), add_special_tokens=False)
        target = data.tokenizer(options.answer_template.format(answer=answer), add_special_tokens=False)
        target = target["input_ids"] + [data.tokenizer.eos_token_id]
        ids = torch.tensor([prompt["input_ids"] + target], device=placement.device)
        with torch.no_grad():
            logprobs = torch.log_softmax(net(input_ids=ids).logits[0].double(), -1).cpu()
        before = range(len(prompt["input_ids"]) - 1, ids.shape[1] - 1)  # position i predicts token i + 1
        return -float(np.mean([logprobs[i, ids[0, i + 1]] for i in before]))

    losses = split_losses(net, data, "retain", placement)
    for i, row in enumerate(eval_rows(data, "retain")):
        assert losses["answer"][i] == pytest.approx(tofu_loss(row["question"], row["answer"]), abs=1e-5)
        assert losses["paraphrased"][i] == pytest.approx(tofu_loss(row["question"], row["paraphrased_answer"]),
                                                         abs=1e-5)
        assert losses["perturbed"][i] == pytest.approx([tofu_loss(row["question"], p)
                                                        for p in row["perturbed_answer"]], abs=1e-5)
    attack = membership_scores(net, data, placement)["holdout"]["mia_loss_score"]  # one answer per question
    assert attack == pytest.approx([tofu_loss(r["question"], r["answer"]) for r in data.split_rows("holdout")],
                                   abs=1e-5)


def forget_quality(frame: pd.DataFrame, reference: pd.DataFrame) -> float:
    """TOFU's Forget Quality from two models' example rows: the KS test's p-value between their truth
    ratios on the forget set (evaluate_util.py / aggregate_eval_stat.py)."""
    ratios = [rows.loc[rows["split"] == "forget", "truth_ratio"].dropna() for rows in (frame, reference)]
    return ks_2samp(*ratios).pvalue


def assert_gives_tofu_metrics(metrics: dict, frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    """Every TOFU metric of one model recomputed from its examples rows with TOFU's and open-unlearning's
    formulas; ``reference``: the retrained model's rows (Forget Quality's and PrivLeak's reference)."""
    split = {name: frame[frame["split"] == name].sort_values("example") for name in (*EVAL_SETS, "holdout")}
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    stats = {}
    for name in EVAL_SETS:
        rows = split[name][split[name]["loss"].notna()]  # the evaluated rows (on forget, the first eval_size)
        assert (rows["example"].to_numpy() == np.arange(len(rows))).all(), name
        recall = [scorer.score(answer, generated)["rougeL"].recall
                  for answer, generated in zip(rows["answer"], rows["generated"].fillna(""))]
        assert np.allclose(rows["rouge_recall"], recall), name
        r = rows["truth_ratio"].to_numpy()
        stats[name] = {"rouge": np.mean(recall), "prob": rows["prob"].mean(),
                       "truth_ratio": np.mean(np.minimum(r, 1 / r) if name == "forget" else np.maximum(0, 1 - r))}
        for stat, value in stats[name].items():
            assert metrics[f"{stat}_{name}"] == pytest.approx(value, rel=1e-6, abs=1e-9), (stat, name)
        if name in ("forget", "retain"):  # TOFU's probability there: exp(-token-mean loss)
            assert np.allclose(rows["prob"], np.exp(-rows["loss"]))
            assert metrics[f"loss_{name}"] == pytest.approx(rows["loss"].mean(), rel=1e-6)
    assert metrics["forget_quality"] == pytest.approx(forget_quality(frame, reference), rel=1e-9)
    utility = [stats[name][stat] for name in EVAL_SETS[1:] for stat in ("prob", "rouge", "truth_ratio")]
    assert metrics["model_utility"] == pytest.approx(hmean(utility) if min(utility) > 0 else 0.0, rel=1e-9)
    auc = {}
    for name, rows in (("model", frame), ("reference", reference)):
        forget, holdout = (rows[rows["split"] == s] for s in ("forget", "holdout"))
        labels = np.r_[np.zeros(len(forget)), np.ones(len(holdout))]  # all of Df 0, held-out 1 (mia/utils.py)
        auc[name] = {column: roc_auc_score(labels, np.r_[forget[column], holdout[column]])
                     for column in ("mia_loss_score", "min_k_score")}
    assert metrics["mia_loss"] == pytest.approx(auc["model"]["mia_loss_score"], abs=1e-12)
    assert metrics["mia_min_k"] == pytest.approx(auc["model"]["min_k_score"], abs=1e-12)
    score, base = 1 - auc["model"]["min_k_score"], 1 - auc["reference"]["min_k_score"]  # privacy.py:50-52
    assert metrics["privleak"] == pytest.approx((score - base) / (base + 1e-10) * 100, abs=1e-6)


EVAL_SETS = ("forget", "retain", "real_authors", "world_facts")


def test_stored_per_example_values_give_back_every_tofu_metric(tofu_store):
    """Each endpoint's and the retrained model's stored examples (their artifacts' examples.parquet), and
    the original's, give their stored metrics: Forget Quality from the stored truth ratios against the
    retrained model's, ROUGE as the mean recall, Model Utility, the attack AUCs and PrivLeak."""
    plan, store = tofu_store
    original, retrained = next(iter(plan.originals.values())), next(iter(plan.retrained.values()))
    reference = store.load_examples(retrained.key).to_pandas()
    assert_gives_tofu_metrics(store.read_meta(retrained.key)["metrics"], reference, reference)
    for endpoint in plan.endpoints.values():
        stored = store.load_examples(endpoint.key).to_pandas()
        assert_gives_tofu_metrics(store.read_meta(endpoint.key)["metrics"], stored, reference)
    evaluation = jobs.original_metrics(store, original, retrained)
    assert_gives_tofu_metrics(evaluation, example_table(evaluation.examples).to_pandas(), reference)
    _, data = jobs.task_data("tofu", original.options, retrained.ratio)
    for name in EVAL_SETS[1:]:  # each row names its question
        assert reference.loc[reference["split"] == name, "question"].tolist() == [
            r["question"] for r in eval_rows(data, name)]


def test_forget_rows_past_the_evaluation_set_carry_attack_scores_only(tofu_store):
    """With fewer evaluated forget rows (eval_size) than Df has, the attacks still read all of Df: the
    forget split lists every row of Df, its question at its index, the others' values null."""
    plan, store = tofu_store
    endpoint = next(iter(plan.endpoints.values()))
    options = endpoint.options
    task, data = jobs.task_data("tofu", options, endpoint.ratio)
    data = dataclasses.replace(data, rows=dataclasses.replace(data.rows, forget_eval=data.rows.forget[:12]), encoded={})
    placement = Placement("cpu")
    context = task.eval_context(options, data, store.load_weights(endpoint.retrained), placement)
    frames, metrics = {}, {}
    for key in (endpoint.retrained, endpoint.key):
        model = task.new_model(options, seed=0, placement=placement)
        model.load_state_dict(store.load_weights(key))
        metrics[key] = task.evaluate(model, options, data, context, placement)
        frames[key] = example_table(metrics[key].examples).to_pandas()
    forget = frames[endpoint.key][frames[endpoint.key]["split"] == "forget"]
    assert len(data.rows.forget) == 20 and forget["question"].tolist() == [r["question"] for r in data.rows.forget]
    assert forget["loss"].notna().sum() == 12 and forget["generated"].notna().sum() == 12
    assert forget.iloc[12:][["loss", "prob", "truth_ratio", "rouge_recall", "answer"]].isna().all().all()
    assert forget[["mia_loss_score", "min_k_score"]].notna().all().all()
    for key in metrics:
        assert_gives_tofu_metrics(metrics[key], frames[key], frames[endpoint.retrained])
