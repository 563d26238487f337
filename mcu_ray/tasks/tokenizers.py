"""A byte-level BPE tokenizer trained on a task's own text, for models built from a config.

Offline runs have no hub tokenizer; a tokenizer trained on the task text is small,
deterministic for the same text, and retrained identically by every process.
"""
from __future__ import annotations


def train_bpe(texts, vocab_size: int, bos_eos: str = "<|endoftext|>", pad: str = "<|pad|>"):
    """A PreTrainedTokenizerFast with ``bos_eos`` as BOS/EOS and ``pad`` as padding."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=1, special_tokens=[bos_eos, pad],
                            show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=bos_eos, pad_token=pad,
                                   bos_token=bos_eos)
