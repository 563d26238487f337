"""Membership inference: the attacks' formulas against their sources, and the classification
attacks on digits models that did and did not train on Df (no Ray).

Expected numbers are worked out here from the sources' definitions with scikit-learn / SciPy:
SalUn's SVC_MIA.py (an SVC on the true-class confidence), open-unlearning's mia_auc (ROC AUC,
forget labelled 0, held-out 1, scores signed like a loss), min_k.py and privacy.py (PrivLeak).
"""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import mannwhitneyu
from sklearn.metrics import roc_auc_score
from sklearn.svm import SVC

from mcu_ray.placement import Placement
from mcu_ray.tasks import privacy
from mcu_ray.tasks.classification import ClassificationData
from mcu_ray.tasks.digits import TASK as DIGITS, load_arrays
from mcu_ray.train import train_supervised


# ----------------------------------------------------------------------------- the formulas
def test_attack_auc_is_the_mann_whitney_statistic_with_forget_as_the_familiar_side():
    rng = np.random.default_rng(0)
    forget, heldout = rng.exponential(0.5, 40), rng.exponential(1.0, 50)
    forget[:5] = heldout[:5]  # ties count half
    # P(forget loss < held-out loss) + P(tie) / 2: scipy's U of the held-out sample over n_f * n_h
    expected = mannwhitneyu(heldout, forget).statistic / (len(forget) * len(heldout))
    assert privacy.mia_auc(forget, heldout) == pytest.approx(expected, abs=1e-12)
    assert privacy.mia_auc(forget, heldout) > 0.5  # lower losses on Df: it looks trained on
    assert privacy.mia_auc([0.1, 0.2], [0.1, 0.2]) == 0.5
    assert np.isnan(privacy.mia_auc([0.1, np.inf], [0.2, 0.3]))  # a diverged model's number fails


def test_min_k_is_minus_the_mean_of_the_lowest_k_fraction():
    logprobs = [-0.1, -3.0, -0.5, -2.0, -0.2]  # int(5 * 0.4) = 2 lowest: -3.0 and -2.0
    assert privacy.min_k_score(logprobs) == pytest.approx(2.5)
    assert privacy.min_k_score([-0.7, -0.1]) == pytest.approx(0.7)  # int(0.8) = 0 -> at least one
    assert privacy.min_k_score([]) == 0.0  # open-unlearning: an answer with no scored token scores 0
    assert privacy.MIN_K == 0.4  # configs/eval/tofu_metrics/mia_min_k.yaml


def test_privleak_is_muses_relative_change_of_one_minus_auc():
    # privacy.py:50-52: score, ref = 1 - auc, 1 - ref_auc; (score - ref) / (ref + 1e-10) * 100
    assert privacy.privleak(0.9, 0.5) == pytest.approx((0.1 - 0.5) / (0.5 + 1e-10) * 100)  # -80: exposed
    assert privacy.privleak(0.55, 0.55) == 0.0
    assert privacy.privleak(0.3, 0.5) == pytest.approx(40.0)  # Df hidden more than never seen: over-unlearned
    assert privacy.privleak(1.0, 0.5) == pytest.approx(-100.0)


# ----------------------------------------------------------------------------- digits models
# Digits generalises so well (test accuracy ~97 %) that a model trained on ~1300 rows barely tells its
# training rows from the test split by loss (AUC ~0.53). A small D of 240 rows makes what the original
# memorised visible; half the dataset is the test split (899 rows), which keeps the AUC's noise under
# the null small (standard error ~0.028 for 120 x 899 rows).
N_FORGET = N_RETAIN = 120


@pytest.fixture(scope="module")
def digits_models():
    """(options, data, {"original": model on D, "retrained": model on Dr only}) on digits with a small D;
    the training rows outside D are the (unused) validation split, the test split is digits' own."""
    torch.set_num_threads(1)
    options = DIGITS.Options(test_fraction=0.5)
    train, test, classes = load_arrays(options)
    perm = torch.randperm(len(train["y"]), generator=torch.Generator().manual_seed(0))
    cut = N_FORGET + N_RETAIN
    data = ClassificationData(train, test, perm[:N_FORGET].sort().values, perm[N_FORGET:cut].sort().values, classes,
                              perm[cut:].sort().values)
    models = {}
    for name, split in (("original", "train"), ("retrained", "retain")):
        models[name] = DIGITS.new_model(options, seed=0)
        train_supervised(models[name], DIGITS, data.split(split), epochs=60, lr=3e-3, batch_size=16, weight_decay=0,
                         seed=0)
    return options, data, models


def evaluate(digits_models, data) -> dict:
    """name -> (the task's metrics of that model on ``data``, its logits on test, retain and forget as
    the metrics saw them: BatchNorm re-estimated on Dr by ``evaluate``)."""
    options, _, models = digits_models
    placement = Placement("cpu")
    context = DIGITS.eval_context(options, data, None, placement)
    out = {}
    for name, model in models.items():
        metrics = DIGITS.evaluate(model, options, data, context, placement)
        model.eval()
        with torch.no_grad():
            logits = {s: model(data.split(s)["x"]) for s in ("test", "retain", "forget")}
        out[name] = metrics, logits
    return out


def expected_loss_auc(logits: dict, data) -> float:
    """Members (Df) positive, score = -loss (per-example cross-entropy), sklearn's ROC AUC."""
    losses = {s: F.cross_entropy(logits[s].double(), data.split(s)["y"], reduction="none").numpy()
              for s in ("forget", "test")}
    members = np.r_[np.ones(len(losses["forget"])), np.zeros(len(losses["test"]))]
    return roc_auc_score(members, -np.r_[losses["forget"], losses["test"]])


def expected_mia_efficacy(logits: dict, data) -> float:
    """SalUn's SVC_MIA with shadow_train = the first |test| rows of Dr, shadow_test = test, target_test = Df,
    the 'confidence' feature (softmax at the true class), SVC(C=3, gamma='auto', kernel='rbf'): 1 - mean
    prediction on Df (SVC_MIA.py:53-82, 105-108; main_random.py:174-185)."""
    conf = {s: F.softmax(logits[s], dim=-1).gather(1, data.split(s)["y"][:, None]).numpy()
            for s in ("test", "retain", "forget")}
    shadow_train = conf["retain"][:len(conf["test"])]
    x = np.concatenate([shadow_train, conf["test"]])
    y = np.concatenate([np.ones(len(shadow_train)), np.zeros(len(conf["test"]))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return 1 - clf.predict(conf["forget"]).mean()


def test_loss_attack_auc_is_near_half_without_df_and_clearly_above_with_it(digits_models):
    data = digits_models[1]
    out = evaluate(digits_models, data)
    for name, (metrics, logits) in out.items():
        assert metrics["mia_loss"] == pytest.approx(expected_loss_auc(logits, data), abs=1e-12), name
    never_saw, original = out["retrained"][0]["mia_loss"], out["original"][0]["mia_loss"]
    assert abs(never_saw - 0.5) < 0.1
    assert original > 0.58 and original > never_saw + 0.08  # 0.62 vs 0.50 here (3 seeds: 0.61-0.62, 0.48-0.50)


def test_mia_efficacy_is_salun_svc_on_confidence(digits_models):
    """SalUn's Dr is larger than its test split, so its shadow members and non-members are equally many;
    with this small D, evaluate on the first |Dr| test rows to keep that balance."""
    data = digits_models[1]
    balanced = dataclasses.replace(data, test={k: v[:N_RETAIN] for k, v in data.test.items()})
    out = evaluate(digits_models, balanced)
    for name, (metrics, logits) in out.items():
        assert metrics["mia_efficacy"] == pytest.approx(expected_mia_efficacy(logits, balanced), abs=1e-12), name
    # the original's Df looks trained on: fewer of its rows pass as non-members than the retrained model's
    assert out["original"][0]["mia_efficacy"] < out["retrained"][0]["mia_efficacy"]
