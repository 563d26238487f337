"""Published checkpoints as the original and as retain-only references, one per forget ratio,
through the same hub/local loading path (local folders here: no network in tests)."""
import torch

from mcu_ray import jobs
from mcu_ray.plan import make_plan
from mcu_ray.spec import parse_spec
from mcu_ray.store import Store
from mcu_ray.tasks.base import retain_checkpoint
from mcu_ray.tasks.tofu import TASK, Options, build_model, tokenizer_for

TINY = {"synthetic_authors": 10, "eval_size": 8, "n_embd": 32, "n_layer": 1, "vocab_size": 400, "max_new_tokens": 8}


def save_checkpoint(folder, seed):
    """A tiny Llama and its tokenizer saved as a Hugging Face folder (what a hub download is)."""
    options = Options(model="tiny-llama", **TINY)
    torch.manual_seed(seed)
    model = build_model(options, tokenizer_for(options))
    model.save_pretrained(folder)
    tokenizer_for(options).save_pretrained(folder)
    return model


def test_placeholders_name_one_reference_per_ratio():
    assert retain_checkpoint("org/tofu_Llama-2-7b-chat-hf_retain{retain}", 10.0) == "org/tofu_Llama-2-7b-chat-hf_retain90"
    assert retain_checkpoint("org/tofu_retain{retain}", 1.0) == "org/tofu_retain99"
    assert retain_checkpoint("ref_forget{ratio}", 5.0) == "ref_forget5"


def test_published_original_and_lora_over_a_published_reference(tmp_path):
    """epochs 0: the original is the checkpoint; the reference of ratio 10 is the retain90 folder, and
    with LoRA its own base (not the original's) is what it is evaluated with."""
    torch.set_num_threads(1)
    original = save_checkpoint(tmp_path / "full", seed=1)
    reference = save_checkpoint(tmp_path / "ref_retain90", seed=2)
    spec = parse_spec({"name": "t", "settings": ["Met"], "points": 3, "tasks": [{
        "name": "tofu", "ratios": [10], "methods": ["gd", "npo"],
        "options": {**TINY, "model": str(tmp_path / "full"), "epochs": 0, "lora_rank": 2,
                    "lora_targets": "q_proj,v_proj", "reference_model": str(tmp_path / "ref_retain{retain}")}}]})
    plan = make_plan(spec)
    store = Store(str(tmp_path / "store"))
    orig_item, ref_item = next(iter(plan.originals.values())), next(iter(plan.retrained.values()))
    jobs.build_original(store, orig_item)
    jobs.build_retrained(store, ref_item)
    assert store.read_meta(ref_item.key)["train_log"]["loaded"] == str(tmp_path / "ref_retain90")

    options, batch = ref_item.options, {"input_ids": torch.tensor([[5, 6, 7, 8]])}
    with torch.no_grad():
        rebuilt = jobs.load_state(TASK.new_model(options, seed=0), store.load_weights(ref_item.key))
        assert torch.allclose(rebuilt(**batch).logits, reference(**batch).logits, atol=1e-5)
        assert not torch.allclose(rebuilt(**batch).logits, original(**batch).logits, atol=1e-3)
        rebuilt = jobs.load_state(TASK.new_model(options, seed=0), store.load_weights(orig_item.key))
        assert torch.allclose(rebuilt(**batch).logits, original(**batch).logits, atol=1e-5)
    # the reference's Forget Quality is 1 against itself: its own truth ratios are the context
    assert store.read_meta(ref_item.key)["metrics"]["forget_quality"] == 1.0
