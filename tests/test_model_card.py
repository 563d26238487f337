"""An exported model's card from the facts ``export.summary`` gathers, written by hand here: its title,
front matter, loading snippet with the task's options, tables (numbers short, '|' escaped), metric
directions from the registry, and what it says when a point was never evaluated.
(tests/test_export.py checks the cards of real exports.)"""
from mcu_ray.model_card import how_computed, metric_rows, model_card, title, what_it_is

ENDPOINT = {"task": "digits", "method": "npo", "optimizer": "so", "curriculum": "cl", "seed": 3, "ratio": 5.0,
            "hparams": {"lr": 1e-4}, "optimizer_params": {}, "curriculum_params": {"kind": "superloss"},
            "original": "original-1", "retrained": "retrained-1", "source": "", "precision": "fp32",
            "options": {"width": 4}}


def facts(**changes) -> dict:
    base = {"exported_by": "mcu_ray 0.1.0", "storage": "/runs", "asked_for": "endpoint-1", "key": "endpoint-1",
            "kind": "endpoint", "t": None, "named_by": {}, "item": ENDPOINT,
            "metrics": {"acc_forget": 0.123456789, "loss_retain": 0.5},
            "meta": {"device": "cpu", "precision": "fp32", "workers": 1, "train_log": {"steps": 30}}}
    return {**base, **changes}


def test_titles_say_which_model():
    assert title(facts()) == "digits endpoint: NPO (so, cl), seed 3, forget 5 %"
    original = {"task": "digits", "precision": "fp32", "options": {}}
    assert title(facts(kind="original", item=original)) == "digits original model"
    point = facts(kind="curve_point", t=1 / 3, item={"task": "digits", "kind": "bezier", "ratio": 5.0},
                  endpoints=[{"item": ENDPOINT}, {"item": {**ENDPOINT, "method": "ga", "seed": 4}}])
    assert title(point) == "digits: φ(0.333333) on the bezier curve NPO (so, cl), seed 3 → GA (so, cl), seed 4, forget 5 %"


def test_what_it_is_leaves_out_fields_that_are_empty_strings():
    rows = dict(what_it_is(facts()))
    assert rows["method"] == "npo" and rows["seed"] == 3 and rows["forget ratio (%)"] == 5.0
    assert rows["curriculum knobs"] == {"kind": "superloss"}
    assert rows["optimiser knobs"] == {} and "pathway source" not in rows  # "" (no source): left out


def test_metrics_carry_the_registrys_direction_and_unknown_ones_none():
    assert [row[:3] for row in metric_rows("digits", {"acc_forget": 0.1, "loss_retain": 0.2, "made_up": 1.0})] == [
        ("acc_forget", 0.1, "↓"), ("loss_retain", 0.2, "↓"), ("made_up", 1.0, "")]
    assert how_computed({"device": "cpu", "workers": 2}) == [("device", "cpu"), ("data-parallel workers", 2)]


def test_the_card_has_front_matter_a_loading_snippet_and_short_numbers():
    card = model_card(facts(), transformers_model=False)
    assert card.startswith("---\nlibrary_name: mcu_ray\npipeline_tag: image-classification\ntags:\n- mcu_ray\n")
    assert "# digits endpoint: NPO (so, cl), seed 3, forget 5 %" in card
    assert "Classifier.from_pretrained" in card
    assert "| acc_forget | 0.123457 | ↓ |" in card  # 6 significant digits
    assert '| hyper-parameters | `{"lr": 0.0001}` |' in card
    assert '## Training log\n\n```json\n{\n "steps": 30\n}\n```' in card


def test_a_point_never_evaluated_says_so_and_pipes_are_escaped():
    card = model_card(facts(metrics={}, asked_for="a|b"), transformers_model=True)
    assert "No evaluation of this point is stored" in card
    assert "library_name: transformers" in card and "asked for as `a|b`" in card
    assert "| artifact key | endpoint-1 |" in card
    escaped = model_card(facts(key="a|b"), transformers_model=False)
    assert "| artifact key | a\\|b |" in escaped
