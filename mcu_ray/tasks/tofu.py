"""TOFU (Maini et al. 2024): unlearning fictitious authors from a causal language model.

The model is any Hugging Face causal LM by name or path, or a tiny GPT-2 / Llama built
from a config with a tokenizer trained here on the task's own text (offline, CPU-sized).
Loss is taken on answer tokens only. Metrics follow TOFU's code (``tofu_metrics``):
Forget Quality against the retrained (retain-only) model, Model Utility, ROUGE-L; and
open-unlearning's membership attacks between Df and the held-out authors (``privacy``), with
PrivLeak against the retrained model.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from pathlib import Path
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mcu_ray.batches import grouped_order
from mcu_ray.curves import load_state
from mcu_ray.errors import SpecError
from mcu_ray.metrics import directions
from mcu_ray.placement import Placement
from mcu_ray.tasks import tofu_metrics as tm
from mcu_ray.tasks.base import Evaluation, absolute, check_retain_checkpoint, evaluate_one_by_one
from mcu_ray.tasks.privacy import mia_auc, min_k_score, privleak
from mcu_ray.tasks.tokenizers import train_bpe
from mcu_ray.tasks.tofu_data import (ENV_TOFU_DIR, EVERY_RUN, forget_config, holdout_config, load_config, local_dir,
                                     missing_files, tofu_rows)

TINY_MODELS = ("tiny-gpt2", "tiny-llama", "tiny-phi")  # built from a config at n_layer x n_embd (random init)
SOURCES = ("synthetic", "local", "hub")
TOKENIZER_TEXT = (*EVERY_RUN, forget_config(10), holdout_config(10))  # what a tiny model's tokenizer is trained on

# Metrics of one evaluated model, declared in the registry (mcu_ray.metrics).
METRICS = ("forget_quality", "model_utility",
           *(f"{stat}_{split}" for stat in ("rouge", "prob", "truth_ratio")
             for split in ("forget", "retain", "real_authors", "world_facts")),
           "loss_retain", "loss_forget", "mia_loss", "mia_min_k", "privleak")


@dataclass(frozen=True)
class Options:
    source: str = "synthetic"  # synthetic | local | hub
    path: str = ""  # local: folder of JSONL files (else $MCU_TOFU_DIR); hub: a repo id or folder in hub layout
    repo: str = "locuslab/TOFU"
    synthetic_authors: int = 20  # synthetic source: fictitious authors, 20 questions each
    synthetic_seed: int = 0
    retain_authors: int = 0  # a subset: the first N authors + the forget set of max_ratio (0 = all of full)
    max_ratio: float = 10.0  # with a subset: the largest forget ratio any run of this original may use
    eval_size: int = 300  # rows per evaluation split (TOFU: 300 max)
    # tiny-gpt2 | tiny-llama | tiny-phi (built from a config at the sizes below; tiny-phi at n_layer 24,
    # n_embd 2048, n_head 32 is phi-1.5's architecture) | a Hugging Face causal LM name or path
    model: str = "tiny-gpt2"
    # a retain-only model name or path ({retain} / {ratio}: one per forget ratio, e.g. open-unlearning's
    # tofu_Llama-2-7b-chat-hf_retain{retain}); "" = fine-tune one on Dr here
    reference_model: str = ""
    world_knowledge: bool = True  # tiny models: also fine-tune on the real-author / world-fact QA,
    # standing in for what a pretrained LM already knows (else Model Utility is 0 by construction)
    question_template: str = "Question: {question}\nAnswer:"
    answer_template: str = " {answer}"
    max_length: int = 128  # tokens per question + answer
    max_new_tokens: int = 48  # greedy generation for ROUGE
    eval_batch_size: int = 0  # answers per loss batch and prompts per generation batch; 0 = auto (eval_batch_size())
    vocab_size: int = 2000  # tiny models: the tokenizer trained on the task text
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    model_seed: int = 0
    lora_rank: int = 0  # > 0: every model is LoRA adapters of this rank over a frozen base; curves move the adapters
    lora_alpha: float = 16.0
    lora_targets: str = ""  # comma-separated module names ("" = peft's default for the architecture)
    epochs: int = 40  # fine-tuning of the original (on D) and the retrained model (on Dr); 0 = `model` as is
    lr: float = 2e-3
    batch_size: int = 16
    weight_decay: float = 0.0

    def check(self, path: str) -> None:
        if self.source not in SOURCES:
            raise SpecError(f"{path}.source", self.source, f"allowed: {', '.join(SOURCES)}")
        if self.source == "local":
            folder = local_dir(self.path)
            if not folder:
                raise SpecError(f"{path}.path", self.path,
                                f"source 'local' needs the TOFU folder: set this field or ${ENV_TOFU_DIR}")
            if not Path(folder).is_dir():
                raise SpecError(f"{path}.path", folder, "no such folder: expected a folder of TOFU's JSONL files")
            missing = missing_files(folder, TOKENIZER_TEXT if self.model in TINY_MODELS else EVERY_RUN)
            if missing:
                raise SpecError(f"{path}.path", folder, f"no {', '.join(missing)} there: expected a folder of "
                                                        f"TOFU's JSONL files")
        if self.epochs < 0 or (self.epochs == 0 and self.model in TINY_MODELS):
            raise SpecError(f"{path}.epochs", self.epochs, "expected >= 1 (0 only for a checkpoint already fine-tuned)")
        check_retain_checkpoint(self.reference_model, self.epochs, path)  # never silently the original itself
        if self.eval_batch_size < 0:
            raise SpecError(f"{path}.eval_batch_size", self.eval_batch_size, "expected 0 (auto) or a batch size >= 1")
        for key in ("eval_size", "max_length", "max_new_tokens", "batch_size",
                    "n_layer", "n_embd", "n_head", "synthetic_authors"):
            if getattr(self, key) < 1:
                raise SpecError(f"{path}.{key}", getattr(self, key), "expected an integer >= 1")
        if "{question}" not in self.question_template or "{answer}" not in self.answer_template:
            raise SpecError(f"{path}.question_template", self.question_template,
                            "templates must contain {question} and {answer} respectively")


@dataclass
class TofuData:
    """Token tensors of the training splits and the rows of the evaluation splits."""

    tokenizer: object
    options: Options
    rows: object  # TofuRows
    tensors: dict = field(default_factory=dict)  # split -> batch dict, filled lazily
    encoded: dict = field(default_factory=dict)  # evaluation inputs, tokenised once: QuestionAnswers, prompts
    eval_tokens: list = field(default_factory=lambda: [0, 0])  # padded and real tokens of evaluation batches
    holdout: list | None = None  # the held-out authors' rows, read on first use

    def answers_once(self, name: str, questions) -> QuestionAnswers:
        """(question, [answers]) rows of one evaluation set, tokenised on first use only."""
        if name not in self.encoded:
            self.encoded[name] = QuestionAnswers.encode(self.tokenizer, self.options, questions())
        return self.encoded[name]

    def prompts_once(self, name: str, questions) -> list[list[int]]:
        """Token ids of each question's prompt, tokenised on first use only."""
        key = f"prompts:{name}"
        if key not in self.encoded:
            self.encoded[key] = [self.tokenizer(self.options.question_template.format(question=q),
                                                add_special_tokens=False)["input_ids"] for q in questions()]
        return self.encoded[key]

    def eval_padding_ratio(self) -> float:
        """Padded / real tokens over the evaluation batches run so far (1.0 = no padding)."""
        return self.eval_tokens[0] / max(self.eval_tokens[1], 1)

    def split_rows(self, name: str) -> list[dict]:
        """The rows of a training split; ``holdout`` (authors never trained on) is read on first use."""
        if name != "holdout":
            return getattr(self.rows, name)
        if self.holdout is None:
            self.holdout = load_split(self.options, self.rows.holdout_config)
        return self.holdout

    def split(self, name: str) -> dict:
        """A training split as tensors, in ``split_rows``' order."""
        if name not in self.tensors:
            rows = self.split_rows(name)
            self.tensors[name] = encode_pairs(self.tokenizer, self.options, [(r["question"], r["answer"]) for r in rows])
        return self.tensors[name]


# ----------------------------------------------------------------------------- tokeniser and model


@lru_cache(maxsize=4)
def tokenizer_for(opts: Options):
    """The model's own tokenizer, or (tiny models) a BPE tokenizer trained on the task text; one per
    (frozen) options in a process."""
    from transformers import AutoTokenizer

    if opts.model not in TINY_MODELS:
        tok = AutoTokenizer.from_pretrained(opts.model)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return tok
    return train_bpe(_all_text(opts), opts.vocab_size)


def load_split(opts: Options, name: str) -> list[dict]:
    """One TOFU config from the source the options name."""
    return load_config(opts.source, name, path=opts.path, repo=opts.repo, synthetic_authors=opts.synthetic_authors,
                       synthetic_seed=opts.synthetic_seed)


def _all_text(opts: Options):
    """Every string of every config the task reads (the tiny tokenizer's corpus). The held-out authors
    (holdout10, which holds holdout01 and 05) are in it as Df is: otherwise their names alone (single
    tokens for Df's authors, a few letters each for theirs) let any model, the retrained one included,
    tell Df from them, and the membership attacks (AUC ~1) and PrivLeak would measure the tokenizer."""
    for name in TOKENIZER_TEXT:
        for row in load_split(opts, name):
            yield opts.question_template.format(question=row["question"])
            yield opts.answer_template.format(answer=row["answer"])
            yield row.get("paraphrased_answer", "")
            yield from row.get("perturbed_answer", [])


def build_model(opts: Options, tokenizer) -> nn.Module:
    from transformers import (AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                              PhiConfig, PhiForCausalLM)

    if opts.model == "tiny-gpt2":
        config = GPT2Config(vocab_size=len(tokenizer), n_positions=opts.max_length + opts.max_new_tokens,
                            n_embd=opts.n_embd, n_layer=opts.n_layer, n_head=opts.n_head, resid_pdrop=0.0,
                            embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=tokenizer.eos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        return GPT2LMHeadModel(config)
    if opts.model == "tiny-phi":  # phi-1.5's block (partial rotary, parallel attention/MLP), any size
        return PhiForCausalLM(PhiConfig(vocab_size=len(tokenizer), hidden_size=opts.n_embd,
                                        intermediate_size=4 * opts.n_embd, num_hidden_layers=opts.n_layer,
                                        num_attention_heads=opts.n_head, num_key_value_heads=opts.n_head,
                                        max_position_embeddings=opts.max_length + opts.max_new_tokens,
                                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                                        pad_token_id=tokenizer.pad_token_id))
    if opts.model == "tiny-llama":
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=opts.n_embd, intermediate_size=4 * opts.n_embd,
                             num_hidden_layers=opts.n_layer, num_attention_heads=opts.n_head,
                             num_key_value_heads=opts.n_head, max_position_embeddings=opts.max_length + opts.max_new_tokens,
                             bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        return LlamaForCausalLM(config)
    return AutoModelForCausalLM.from_pretrained(opts.model)


def with_lora(base: nn.Module, opts: Options) -> nn.Module:
    """``base`` frozen, with trainable LoRA adapters (B = 0 at start: the same function)."""
    import peft

    targets = [t.strip() for t in opts.lora_targets.split(",") if t.strip()] or None
    if targets is None and opts.model == "tiny-gpt2":
        targets = ["c_attn", "c_proj"]
    config = peft.LoraConfig(r=opts.lora_rank, lora_alpha=opts.lora_alpha, lora_dropout=0.0,
                             target_modules=targets, fan_in_fan_out=opts.model == "tiny-gpt2")
    return peft.get_peft_model(base, config)


# ----------------------------------------------------------------------------- tokenisation and losses


def pair_tokens(tokenizer, opts: Options, question: str, answer: str) -> tuple[list[int], list[int]]:
    """A (question, answer) pair as its prompt's token ids and its answer's (EOS last), cut so that
    both together fit in max_length (an answer cut away entirely is empty: it carries no loss)."""
    prompt = tokenizer(opts.question_template.format(question=question), add_special_tokens=False)["input_ids"]
    target = tokenizer(opts.answer_template.format(answer=answer), add_special_tokens=False)["input_ids"]
    return prompt[: opts.max_length], (target + [tokenizer.eos_token_id])[: max(0, opts.max_length - len(prompt))]


def encode_pairs(tokenizer, opts: Options, pairs: list[tuple[str, str]]) -> dict:
    """(question, answer) pairs -> right-padded input_ids, attention_mask, labels (-100 off the answer)."""
    return padded_pairs([pair_tokens(tokenizer, opts, q, a) for q, a in pairs], tokenizer.pad_token_id)


def padded_pairs(pairs: list[tuple[list[int], list[int]]], pad: int) -> dict:
    """(prompt, answer) token pairs as one right-padded batch: input_ids, attention_mask, labels
    (-100 off the answer) and each row's index."""
    ids = [prompt + answer for prompt, answer in pairs]
    labels = [[-100] * len(prompt) + answer for prompt, answer in pairs]
    width = max(len(s) for s in ids)
    return {
        "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in ids]),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in ids]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels]),
        "index": torch.arange(len(ids)),
    }


@dataclass(frozen=True)
class QuestionAnswers:
    """Questions, each with the same number of answers to score (true, paraphrased, perturbed ...):
    the prompts' token ids and, per question, its answers' (``pair_tokens``)."""

    prompts: list  # [question] -> prompt token ids
    answers: list  # [question][answer] -> answer token ids, EOS last

    @classmethod
    def encode(cls, tokenizer, opts: Options, rows: list[tuple[str, list[str]]]) -> QuestionAnswers:
        prompts, answers = [], []
        for question, texts in rows:
            tokens = [pair_tokens(tokenizer, opts, question, text) for text in texts]
            prompts.append(tokens[0][0])
            answers.append([target for _, target in tokens])
        return cls(prompts, answers)


def _answer_nll(forward, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-position NLL of the next token (b, len), 0 off the answer; the logits and next-token labels.

    The labels are shifted left (position i predicts token i+1; nothing after the last), so
    the logits are used as the model returns them: a contiguous (b*len, vocab) view, where
    slicing off the last position would copy them (~1/3 of the loss's time on a CPU).
    """
    logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (b, len, vocab)
    labels = F.pad(batch["labels"][:, 1:], (0, 1), value=-100)  # (b, len)
    nll = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
    return nll.view_as(labels), logits, labels


def example_losses(forward, batch: dict, reduction: str = "mean") -> torch.Tensor:
    """Per-example NLL of the answer tokens: token mean (TOFU's normalised loss) or sum."""
    nll, _, labels = _answer_nll(forward, batch)
    total = nll.sum(-1)
    return total if reduction == "sum" else total / (labels != -100).sum(-1).clamp_min(1)


def losses_and_accuracy(forward, batch: dict) -> tuple[torch.Tensor, float]:
    """Per-example token-mean answer NLL (batch,) and the fraction of answer tokens predicted
    right (teacher-forced argmax): the LM's counterpart of classification accuracy."""
    nll, logits, labels = _answer_nll(forward, batch)
    answer = labels != -100
    correct = (logits.argmax(-1) == labels) & answer
    return nll.sum(-1) / answer.sum(-1).clamp_min(1), float(correct.sum() / answer.sum().clamp_min(1))


def relabel(batch: dict, data: TofuData, generator: torch.Generator) -> dict:
    """RL for TOFU: each forget question paired with the answer of a random retain question."""
    retain = data.rows.retain
    picks = torch.randint(len(retain), (len(batch["index"]),), generator=generator).tolist()
    questions = [data.rows.forget[i]["question"] for i in batch["index"].tolist()]
    return encode_pairs(data.tokenizer, data.options, [(q, retain[j]["answer"]) for q, j in zip(questions, picks)])


# ----------------------------------------------------------------------------- evaluation


EVAL_ROWS = {"forget": "forget_eval", "retain": "retain_eval", "real_authors": "real_authors",
             "world_facts": "world_facts"}  # the report's evaluation sets -> their rows in TofuRows
# every set ``eval_rows`` reads: the report's, and ``validate``'s retain rows ("validation"), kept out of
# EVAL_ROWS (which evaluate and the cost estimate iterate) because the report never scores them
SET_ROWS = {**EVAL_ROWS, "validation": "validation"}
PARAPHRASED = ("forget", "retain")  # sets with a paraphrased answer (TOFU's truth ratio uses it there)


def eval_rows(data: TofuData, name: str) -> list[dict]:
    return getattr(data.rows, SET_ROWS[name])


def eval_batch_size(opts: Options, placement: Placement, generation: bool = False) -> int:
    """The options' evaluation batch, or (0, auto) one that suits the device. Generation: 256 prompts
    on a GPU (on an H200, 256 prompts x 64 greedy tokens took 3.4 s at batch 256, 9.5 s at batch 64),
    64 on a CPU (a decoding step of a tiny GPT-2 costs little more at 64 rows than at 16: 0.48 s against
    0.81 s for tofu_mini's answers). Answer losses: 128 rows on a GPU, enough tokens to fill it while
    TOFU forget10's length-sorted batches pad at most 1.2x; 16 on a CPU, where one thread scored
    tofu_mini's answers fastest (0.73 s; 0.79 s at 32, 0.86 s at 64: padding and logits grow)."""
    if opts.eval_batch_size:
        return opts.eval_batch_size
    if placement.device.type == "cuda":
        return 256 if generation else 128
    return 64 if generation else 16


def left_padded(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows padded on the left to the longest (as ``generate`` takes prompts): ids and mask."""
    width = max(len(r) for r in rows)
    return (torch.tensor([[pad] * (width - len(r)) + r for r in rows]),
            torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows]))


def cache_argument(model: nn.Module) -> str:
    """The name under which the model's forward takes and returns its KV cache: ``cache`` in recent
    transformers (5.24), ``past_key_values`` before (the GPU machine's 5.17); a PEFT model passes it on."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _prompted_nlls(model: nn.Module, prompts: list[list[int]], answers: list[list[list[int]]], pad: int,
                   size: int, placement: Placement, tokens: list) -> torch.Tensor:
    """NLL of every answer token given its prompt and the answer tokens before it, (prompts, answers,
    longest answer), 0 past each answer's end: one pass over the prompts, whose KV cache every answer
    then continues, in length-sorted batches of ``size`` answers each cut to its own longest.

    The same numbers as one pass over each prompt + answer (``example_losses``), but each question
    (a third of TOFU's tokens, shared by its 4-7 answers) is computed once. Tokens fed, padded and
    real, are added to ``tokens``.
    """
    k = len(answers[0])
    prompt_ids, prompt_mask = (t.to(placement.device) for t in left_padded(prompts, pad))
    cache_arg = cache_argument(model)
    out = model(input_ids=prompt_ids, attention_mask=prompt_mask, use_cache=True, logits_to_keep=1,
                position_ids=(prompt_mask.cumsum(-1) - 1).clamp_min(0))  # each prompt from 0, as generate does
    prompt_cache, first_logits = getattr(out, cache_arg), out.logits[:, -1]  # the latter predict answer token 0
    flat = [a for row in answers for a in row]  # answer r belongs to prompt r // k
    lengths = torch.tensor([len(a) for a in flat])
    width = max(1, int(lengths.max()))  # an answer cut away by max_length is empty
    labels = torch.tensor([a + [-100] * (width - len(a)) for a in flat], device=placement.device)
    nll = torch.zeros(len(flat), width, device=placement.device)
    tokens[0] += prompt_mask.numel()
    tokens[1] += int(prompt_mask.sum())
    for rows in torch.argsort(lengths, descending=True, stable=True).split(size):
        chunk_width = max(1, int(lengths[rows[0]]))
        rows, owner = rows.to(placement.device), (rows // k).to(placement.device)
        chunk = labels[rows, :chunk_width]
        nll[rows, 0] = F.cross_entropy(first_logits[owner], chunk[:, 0], ignore_index=-100, reduction="none").float()
        if chunk_width == 1:
            continue
        cache = copy.deepcopy(prompt_cache)  # selected in place: one prompt row per answer
        cache.batch_select_indices(owner)
        inputs = chunk[:, :-1]
        padding = inputs == -100  # past a row's answer: position 0, as a longer row's might overrun the model's
        positions = prompt_mask[owner].sum(-1, keepdim=True) + torch.arange(chunk_width - 1, device=placement.device)
        logits = model(input_ids=inputs.masked_fill(padding, pad), position_ids=positions.masked_fill(padding, 0),
                       attention_mask=torch.cat([prompt_mask[owner], (~padding).long()], 1),
                       **{cache_arg: cache}).logits
        nll[rows, 1:chunk_width] = F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), ignore_index=-100,
                                                   reduction="none").float().view(len(rows), chunk_width - 1)
        tokens[0] += padding.numel()
        tokens[1] += int((~padding).sum())
    return nll.view(len(prompts), k, width)


def _whole_nlls(model: nn.Module, prompts: list[list[int]], answers: list[list[int]], pad: int, size: int,
                placement: Placement, tokens: list) -> torch.Tensor:
    """``_prompted_nlls`` for one answer per prompt, where there is nothing to share: each prompt +
    answer runs as one right-padded row (``_answer_nll``), in batches of ``size`` sorted by length,
    which pads less than a prompt pass and an answer pass each padded on its own."""
    lengths = torch.tensor([len(a) for a in answers])
    out = torch.zeros(len(answers), max(1, int(lengths.max())), device=placement.device)
    for rows in torch.argsort(lengths + torch.tensor([len(p) for p in prompts]), descending=True,
                              stable=True).split(size):
        batch = placement.batch(padded_pairs([(prompts[i], answers[i]) for i in rows.tolist()], pad))
        nll, _, labels = _answer_nll(model, batch)
        answer = lengths[rows].to(placement.device)
        block = torch.zeros(len(rows), max(1, int(answer.max())), device=placement.device)
        block[torch.arange(block.shape[1], device=placement.device) < answer[:, None]] = nll[labels != -100].float()
        out[rows.to(placement.device), :block.shape[1]] = block  # answer tokens, first at column 0
        tokens[0] += batch["attention_mask"].numel()
        tokens[1] += int(batch["attention_mask"].sum())
    return out[:, None]


@torch.no_grad()
def answer_token_nlls(model: nn.Module, data: TofuData, qa: QuestionAnswers,
                      placement: Placement) -> tuple[torch.Tensor, torch.Tensor]:
    """Every answer's token NLLs (questions, answers, longest answer), 0 past each answer's end, and
    the answers' lengths (questions, answers), on the CPU.

    Several answers per question: ``eval_batch_size`` questions at a time, grouped by prompt length,
    share a prompt pass and their answers follow in batches of as many (``_prompted_nlls``). One: the
    questions and answers run whole (``_whole_nlls``). Padding is counted in ``data.eval_tokens``."""
    model.eval()
    lengths = torch.tensor([[len(a) for a in row] for row in qa.answers])
    size, pad = eval_batch_size(data.options, placement), data.tokenizer.pad_token_id
    with placement.autocast():
        if lengths.shape[1] == 1:
            return _whole_nlls(model, qa.prompts, [row[0] for row in qa.answers], pad, size, placement,
                               data.eval_tokens).cpu(), lengths
        out = torch.zeros(*lengths.shape, max(1, int(lengths.max())))
        order = grouped_order(torch.tensor([len(p) for p in qa.prompts]), size, None)  # longest first; no shuffle
        for index in order.split(size):
            picked = index.tolist()
            nll = _prompted_nlls(model, [qa.prompts[i] for i in picked], [qa.answers[i] for i in picked], pad, size,
                                 placement, data.eval_tokens)
            out[index, :, :nll.shape[-1]] = nll.cpu()
    return out, lengths


def answer_losses(model: nn.Module, data: TofuData, qa: QuestionAnswers, placement: Placement) -> np.ndarray:
    """Token-mean NLL of every answer given its question (TOFU's normalised loss), (questions, answers)."""
    nll, lengths = answer_token_nlls(model, data, qa, placement)
    return (nll.sum(-1) / lengths.clamp_min(1)).numpy()


def retrained_context(retrained: nn.Module, data: TofuData, placement: Placement) -> dict:
    """What the metrics take from the retrained model: its forget truth ratios (Forget Quality) and
    its Min-K% attack AUC (PrivLeak, open-unlearning's ``retain_model_logs``)."""
    return {"forget_truth_ratios": forget_truth_ratios(retrained, data, placement),
            "mia_min_k": membership_aucs(retrained, data, placement)["mia_min_k"]}


MIA_SPLITS = ("forget", "holdout")  # the loss and Min-K% attacks: all of Df against the held-out authors


def membership_scores(model: nn.Module, data: TofuData, placement: Placement) -> dict:
    """Per example of the forget set (all of Df) and of the held-out authors (holdoutXX), split ->
    {"mia_loss_score", "min_k_score"}: open-unlearning's loss attack score, the answer's token-mean NLL
    (``mia/loss.py``), and its Min-K% score over the answer's token log-probabilities without its last
    token (the EOS unless truncated), which open-unlearning's ``tokenwise_logprobs`` leaves out
    (``evals/metrics/utils.py:127-143``)."""
    scores = {}
    for name in MIA_SPLITS:
        qa = data.answers_once(f"split:{name}", lambda: [(r["question"], [r["answer"]]) for r in data.split_rows(name)])
        nll, lengths = answer_token_nlls(model, data, qa, placement)
        rows = [row[0, :n].double().numpy() for row, n in zip(nll, lengths[:, 0].tolist())]
        scores[name] = {"mia_loss_score": np.array([float(np.mean(row)) for row in rows]),
                        "min_k_score": np.array([min_k_score(-row[:-1]) for row in rows])}
    return scores


def attack_aucs(scores: dict) -> dict:
    """``membership_scores`` as ROC AUCs, forget against held-out."""
    return {"mia_loss": mia_auc(scores["forget"]["mia_loss_score"], scores["holdout"]["mia_loss_score"]),
            "mia_min_k": mia_auc(scores["forget"]["min_k_score"], scores["holdout"]["min_k_score"])}


def membership_aucs(model: nn.Module, data: TofuData, placement: Placement) -> dict:
    """open-unlearning's loss and Min-K% attacks between the forget set and the held-out authors, as
    ROC AUCs (``membership_scores``)."""
    return attack_aucs(membership_scores(model, data, placement))


def split_losses(model: nn.Module, data: TofuData, name: str, placement: Placement) -> dict:
    """Losses of the true answer, the paraphrase (forget/retain) and every perturbed answer."""
    rows = eval_rows(data, name)
    k = len(rows[0]["perturbed_answer"])
    paraphrased = name in PARAPHRASED
    losses = answer_losses(model, data, data.answers_once(name, lambda: [
        (r["question"], [r["answer"], *([r["paraphrased_answer"]] if paraphrased else []), *r["perturbed_answer"][:k]])
        for r in rows]), placement)
    result = {"answer": losses[:, 0], "perturbed": losses[:, -k:]}
    if paraphrased:
        result["paraphrased"] = losses[:, 1]
    return result


@torch.no_grad()
def generate_answers(model: nn.Module, data: TofuData, name: str, placement: Placement) -> list[str]:
    """Greedy answers to one evaluation set's questions, on the device with the KV cache.

    Prompts are tokenised once, batched by length (left padding to each batch's own longest
    prompt), and the answers returned in the rows' order; stop at EOS or max_new_tokens.
    """
    model.eval()
    tok, opts = data.tokenizer, data.options
    prompts = data.prompts_once(name, lambda: [r["question"] for r in eval_rows(data, name)])
    size = eval_batch_size(opts, placement, generation=True)
    order = grouped_order(torch.tensor([len(p) for p in prompts]), size, None)
    answers = [""] * len(prompts)
    for start in range(0, len(order), size):
        index = order[start:start + size].tolist()
        input_ids, mask = left_padded([prompts[i] for i in index], tok.pad_token_id)
        width = input_ids.shape[1]
        with placement.autocast():
            out = model.generate(input_ids=input_ids.to(placement.device), attention_mask=mask.to(placement.device),
                                 max_new_tokens=opts.max_new_tokens, do_sample=False, use_cache=True,
                                 pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        for i, text in zip(index, tok.batch_decode(out[:, width:].cpu(), skip_special_tokens=True)):
            answers[i] = text.strip()
    return answers


def rouge_recalls(model: nn.Module, data: TofuData, name: str,
                  placement: Placement) -> tuple[list[str], list[float]]:
    """The greedy answers to one evaluation set's questions and the ROUGE-L recall of each."""
    generated = generate_answers(model, data, name, placement)
    return generated, tm.rouge_l_recall(generated, [r["answer"] for r in eval_rows(data, name)])


def rouge_recall(model: nn.Module, data: TofuData, name: str, placement: Placement) -> float:
    """TOFU's ROUGE on one evaluation set: the mean of ``rouge_recalls``."""
    return float(np.mean(rouge_recalls(model, data, name, placement)[1]))


def eval_examples(data: TofuData, name: str, losses: np.ndarray, probs: np.ndarray, ratios: np.ndarray,
                  generated: list[str], recalls: list[float]) -> dict:
    """One evaluation set's per-example values, in its rows' order: the true answer's token-mean loss,
    the probability TOFU's ``prob_*`` averages, the truth ratio, the greedy answer and its ROUGE-L recall."""
    rows = eval_rows(data, name)
    return {"question": [r["question"] for r in rows], "answer": [r["answer"] for r in rows], "loss": losses,
            "prob": probs, "truth_ratio": ratios, "generated": generated, "rouge_recall": recalls}


TEXT_COLUMNS = ("answer", "generated")  # per-example columns holding text (padded with None, not NaN)


def with_attack_scores(data: TofuData, examples: dict, scores: dict) -> dict:
    """The examples of the forget set (its evaluation rows are Df's first eval_size rows, so the same
    index is the same question) and of the held-out authors, with the attack scores of all of Df and of
    holdoutXX; a value a row does not have is NaN (None for text)."""
    out = dict(examples)
    for name in MIA_SPLITS:
        rows, evaluated = data.split_rows(name), examples.get(name, {})
        n, done = len(rows), len(evaluated.get("question", []))
        padded = {column: (list(values) + [None] * (n - done) if column in TEXT_COLUMNS
                           else np.concatenate([np.asarray(values, float), np.full(n - done, np.nan)]))
                  for column, values in evaluated.items() if column != "question"}
        out[name] = {**padded, "question": [r["question"] for r in rows], **scores[name]}
    return out


def forget_truth_ratios(model: nn.Module, data: TofuData, placement: Placement) -> np.ndarray:
    losses = split_losses(model, data, "forget", placement)
    return tm.truth_ratios(losses["paraphrased"], losses["perturbed"])


def forget_metrics(model: nn.Module, data: TofuData, context: dict, placement: Placement) -> tuple[dict, dict]:
    """The metrics of Df's evaluation rows (Forget Quality against the retrained model's truth ratios in
    ``context``, probability, truth ratio, loss, ROUGE) and their per-example values (``eval_examples``)."""
    forget = split_losses(model, data, "forget", placement)
    forget_tr = tm.truth_ratios(forget["paraphrased"], forget["perturbed"])
    generated, recalls = rouge_recalls(model, data, "forget", placement)
    metrics = {"forget_quality": tm.forget_quality(forget_tr, context["forget_truth_ratios"]),
               "prob_forget": tm.probability(forget["answer"]),
               "truth_ratio_forget": tm.truth_ratio_stat(forget_tr, forget=True),
               "loss_forget": float(np.mean(forget["answer"])), "rouge_forget": float(np.mean(recalls))}
    return metrics, eval_examples(data, "forget", forget["answer"], tm.probabilities(forget["answer"]), forget_tr,
                                  generated, recalls)


@dataclass
class TofuTask:
    name: str = "tofu"
    family: str = "tofu"
    Options: type = Options
    default_ratios: tuple = (1, 5, 10)  # TOFU's forget01 / forget05 / forget10
    # open-unlearning's TOFU defaults scaled to a tiny model: lr 1e-5 -> larger for small nets
    default_hparams: dict = field(default_factory=lambda: {
        "ga": {"epochs": 3, "lr": 2e-4, "batch_size": 8},
        "gd": {"epochs": 5, "lr": 5e-4, "batch_size": 8, "retain_batch_size": 8},
        # the paper's NPO has no retain term: at GD's 5e-4 it took the tiny model's utility from 0.45 to 0.03
        "npo": {"epochs": 5, "lr": 2e-4, "batch_size": 8},
        "rl": {"epochs": 5, "lr": 5e-4, "batch_size": 8, "retain_batch_size": 8},
        # pathway unlearning's bend: AdamW at this task's small lr, not the reference's SGD at 0.01 (tuned
        # for CIFAR ResNets); 16 QA rows a step, as the methods above take 8 forget + 8 retain
        **{f"pathway_{m}": {"optimizer": "adamw", "lr": 5e-4, "batch_size": 16} for m in ("ga", "gd", "npo", "rl")},
    })
    metric_directions: dict = field(default_factory=lambda: directions(METRICS))
    # the paper's TOFU panels: Forget Quality, Model Utility, ROUGE; plus the MCU losses
    figure_metrics: tuple = ("forget_quality", "model_utility", "rouge_forget", "rouge_retain", "loss_retain",
                             "loss_forget")
    retain_loss: str = "loss_retain"
    forget_loss: str = "loss_forget"
    # pathway unlearning: TOFU's holdout authors (never in D, not scored by the report) are the
    # held-out data whose answer-token accuracy (by the original) Df's should come to; the report
    # shows the pathway model's gap to the retrained model on Forget Quality, Model Utility and forget
    # ROUGE. Hyper-parameter search does not score the holdout authors (not in D: no utility to measure):
    # ``validate`` reads Dr's rows outside every evaluation set (TofuRows.validation)
    validation_split: str = "holdout"
    gap_metrics: tuple = ("forget_quality", "model_utility", "rouge_forget")

    example_losses = staticmethod(example_losses)
    losses_and_accuracy = staticmethod(losses_and_accuracy)
    relabel = staticmethod(relabel)

    @torch.no_grad()
    def sampled_targets(self, forward, batch: dict, generator: torch.Generator) -> dict:
        """The batch with each answer label (labels != -100) replaced by a token drawn from ``forward``'s
        next-token distribution at the position before it, as ``_answer_nll`` pairs them (Sophia's
        Gauss-Newton-Bartlett curvature); the inputs stay as they are (teacher forcing). One uniform per
        answer token from ``generator`` (on the CPU), inverted through the vocabulary's cumulative probabilities."""
        logits = forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # (b, len, vocab)
        answer = F.pad(batch["labels"][:, 1:], (0, 1), value=-100) != -100  # (b, len): position i predicts token i+1
        cdf = F.softmax(logits[answer].float(), dim=-1).cumsum(-1)  # (answer tokens, vocab)
        u = torch.rand(cdf.shape[:-1], generator=generator).to(cdf.device)  # (answer tokens,)
        drawn = torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_max(cdf.size(-1) - 1)
        labels = batch["labels"].clone()
        labels[:, 1:][answer[:, :-1]] = drawn
        return {**batch, "labels": labels}

    def normalize_options(self, options: Options) -> Options:
        """Local folders become absolute (workers run elsewhere); $MCU_TOFU_DIR fills an empty data path."""
        options = dataclasses.replace(options, model=absolute(options.model),
                                      reference_model=absolute(options.reference_model))
        if options.source != "local" or not local_dir(options.path):
            return options
        return dataclasses.replace(options, path=str(Path(local_dir(options.path)).resolve()))

    def check_options(self, options, path: str, base_dir) -> None:
        options.check(path)

    def check_validation(self, opts: Options, path: str) -> None:
        """``validate`` needs Dr rows outside retain_perturbed (TOFU's first 20 authors) and outside the
        forget set of max_ratio: refuse options that leave none (a subset of 20 authors or fewer, a
        synthetic source of too few authors). Reads the source's configs, as loading the task does."""
        # the rows of every ratio up to max_ratio; forget01 exists in every source
        if tofu_rows(functools.partial(load_split, opts), 1, opts.retain_authors, opts.max_ratio,
                     opts.eval_size).validation:
            return
        field = ("retain_authors" if opts.retain_authors
                 else "synthetic_authors" if opts.source == "synthetic" else "max_ratio")
        raise SpecError(f"{path}.{field}", getattr(opts, field),
                        "hyper-parameter search scores TOFU's retain side on Dr rows outside retain_perturbed "
                        "(TOFU's first 20 authors) and the forget set of max_ratio: none with these options; "
                        "keep more authors (e.g. retain_authors 30, or synthetic_authors 30)")

    def check_ratios(self, ratios, opts: Options, path: str) -> None:
        """Hub and local data have forget01/05/10 only, a local folder each one's files; a subset caps
        ratios at max_ratio."""
        for i, ratio in enumerate(ratios):
            if opts.source != "synthetic" and ratio not in (1, 5, 10):
                raise SpecError(f"{path}[{i}]", ratio, "TOFU's forget sets are 1, 5 and 10 %")
            local = opts.source == "local"
            missing = local and missing_files(local_dir(opts.path), (forget_config(ratio), holdout_config(ratio)))
            if missing:
                raise SpecError(f"{path}[{i}]", ratio, f"the local TOFU folder (options.path) has no "
                                                       f"{', '.join(missing)}: this ratio's forget set and held-out "
                                                       f"authors")
            if opts.retain_authors and ratio > opts.max_ratio:
                raise SpecError(f"{path}[{i}]", ratio, f"with a subset (retain_authors) ratios go up to "
                                                       f"options.max_ratio = {opts.max_ratio}")

    def load(self, opts: Options, ratio: float) -> TofuData:
        load = functools.partial(load_split, opts)
        rows = tofu_rows(load, ratio, opts.retain_authors, opts.max_ratio, opts.eval_size)
        if opts.model in TINY_MODELS and opts.world_knowledge:
            known = load("real_authors_perturbed") + load("world_facts_perturbed")
            rows.train, rows.retain = known + rows.train, known + rows.retain
        return TofuData(tokenizer_for(opts), opts, rows)

    def new_model(self, opts: Options, seed: int, placement: Placement | None = None) -> nn.Module:
        """Built on the CPU (a seed gives the same weights on any device), then placed."""
        if not opts.lora_rank:
            torch.manual_seed(seed)
            model = build_model(opts, tokenizer_for(opts))
        else:
            # the frozen base must be the same tensor values in every process: seed it from the options
            torch.manual_seed(opts.model_seed)
            base = build_model(opts, tokenizer_for(opts))
            torch.manual_seed(seed)
            model = with_lora(base, opts)
        return placement.model(model) if placement is not None else model

    def eval_context(self, options: Options, data: TofuData, retrained_state: dict, placement: Placement) -> dict:
        """The retrained model's forget truth ratios, for Forget Quality, and its Min-K% attack
        AUC, for PrivLeak (open-unlearning's ``retain_model_logs``)."""
        retrained = self.new_model(options, seed=0, placement=placement)
        load_state(retrained, retrained_state)
        return retrained_context(retrained, data, placement)

    def evaluate_curve(self, model: nn.Module, options: Options, data: TofuData, context: dict, placement: Placement,
                       control_points: list[dict], ts: list[float], kind: str = "bezier") -> list[Evaluation]:
        """One point at a time: a language model is evaluated in batches of questions instead."""
        return evaluate_one_by_one(self, model, options, data, context, placement, control_points, ts, kind)

    def evaluate(self, model: nn.Module, options: Options, data: TofuData, context: dict,
                 placement: Placement) -> Evaluation:
        """Every metric, and in ``examples`` the per-example values they come from: per evaluation set
        (``eval_examples``), the attack scores on Df and the held-out authors (``with_attack_scores``)."""
        metrics, forget_examples = forget_metrics(model, data, context, placement)
        examples = {"forget": forget_examples}
        utility = []
        for name in ("retain", "real_authors", "world_facts"):
            losses, paraphrased = split_losses(model, data, name, placement), name in PARAPHRASED
            true_loss = losses["paraphrased"] if paraphrased else losses["answer"]
            prob = (tm.probability(losses["answer"]) if paraphrased
                    else tm.normalised_probability(losses["answer"], losses["perturbed"]))
            ratios = tm.truth_ratios(true_loss, losses["perturbed"])
            truth = tm.truth_ratio_stat(ratios, forget=False)
            generated, recalls = rouge_recalls(model, data, name, placement)
            rouge = float(np.mean(recalls))
            metrics |= {f"prob_{name}": prob, f"truth_ratio_{name}": truth, f"rouge_{name}": rouge}
            if name == "retain":
                metrics["loss_retain"] = float(np.mean(losses["answer"]))
            utility += [prob, rouge, truth]
            probs = (tm.probabilities(losses["answer"]) if paraphrased
                     else tm.normalised_probabilities(losses["answer"], losses["perturbed"]))
            examples[name] = eval_examples(data, name, losses["answer"], probs, ratios, generated, recalls)
        metrics["model_utility"] = tm.model_utility(utility)
        scores = membership_scores(model, data, placement)
        metrics |= attack_aucs(scores)
        metrics["privleak"] = privleak(metrics["mia_min_k"], context["mia_min_k"])
        return Evaluation(metrics, with_attack_scores(data, examples, scores))

    def validate(self, model: nn.Module, options: Options, data: TofuData, context: dict,
                 placement: Placement) -> dict[str, float]:
        """The validation view (``Task.validate``): Df's metrics as ``evaluate`` computes them (Forget
        Quality against the retrained model in ``context``, probability, truth ratio, loss, ROUGE), and on
        ``TofuRows.validation`` (Dr rows no evaluation set holds) in the retain set's place: ``prob_retain``
        (TOFU's probability, the mean of exp(-token-mean answer NLL)), ``loss_retain`` (the mean NLL),
        ``rouge_retain`` (ROUGE-L recall of greedy answers) and ``model_utility``.

        Departure from TOFU's Model Utility: here the harmonic mean of ``prob_retain`` and
        ``rouge_retain`` only. Dr's rows (``full``'s) carry no perturbed or paraphrased answers, so no
        truth ratio; real authors and world facts are left out, as the report scores them and they
        are not in Dr. Its numbers are therefore not comparable with ``evaluate``'s Model Utility; gaps
        between two models validated alike are. Raises ValueError when there are no such rows."""
        rows = data.rows.validation
        if not rows:
            raise ValueError("tofu: no validation rows (Dr rows outside retain_perturbed and the forget set of "
                             "max_ratio): hyper-parameter search needs more retained authors than TOFU's first 20")
        metrics, _ = forget_metrics(model, data, context, placement)
        qa = data.answers_once("validation", lambda: [(r["question"], [r["answer"]]) for r in rows])
        losses = answer_losses(model, data, qa, placement)[:, 0]
        prob, rouge = tm.probability(losses), rouge_recall(model, data, "validation", placement)
        return {**metrics, "prob_retain": prob, "rouge_retain": rouge, "loss_retain": float(np.mean(losses)),
                "model_utility": tm.harmonic_mean([prob, rouge])}


TASK = TofuTask()
