"""The BPE tokenizer trained on a task's own text: its special tokens, a lossless round trip, and the
same vocabulary every time it is trained on the same text (every process retrains it)."""
from mcu_ray.tasks.tokenizers import train_bpe

TEXTS = ["Where was Kalo Renmi born?", "Kalo Renmi was born in Oslo.", "What genre does Kalo Renmi write in?"] * 5


def test_special_tokens_and_round_trip():
    tokenizer = train_bpe(TEXTS, vocab_size=300)
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|endoftext|>",) * 2 + ("<|pad|>",)
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|pad|>"]) == [0, 1]  # trained first, in that order
    ids = tokenizer("Kalo Renmi was born in Oslo.")["input_ids"]
    assert tokenizer.decode(ids) == "Kalo Renmi was born in Oslo."
    assert len(ids) < len("Kalo Renmi was born in Oslo.")  # merges learnt from the text: fewer tokens than bytes
    assert len(tokenizer) <= 300


def test_the_same_text_gives_the_same_vocabulary():
    assert train_bpe(TEXTS, vocab_size=300).get_vocab() == train_bpe(list(TEXTS), vocab_size=300).get_vocab()
    assert train_bpe(TEXTS, vocab_size=300).get_vocab() != train_bpe(TEXTS[:1], vocab_size=300).get_vocab()
