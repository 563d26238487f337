"""Batch dicts: minibatches, length grouping, trimming, device moves and per-rank shards.

A batch is a dict of tensors with examples along dim 0 (``x``/``y`` for a plain net;
``input_ids``, ``attention_mask``, ``labels`` ... for a Hugging Face model). Training
loops, methods, pathway unlearning and evaluation all use these helpers, so they live
here rather than in one task.
"""
from __future__ import annotations

import torch

SEQUENCE_KEYS = ("input_ids", "attention_mask", "labels")  # trimmed to the batch's longest row


def batch_length(batch: dict) -> int:
    """Number of examples in a batch dict (every value has them along dim 0)."""
    return len(next(iter(batch.values())))


def select(batch: dict, index: torch.Tensor) -> dict:
    """The rows ``index`` of every tensor of a batch."""
    return {k: v[index] for k, v in batch.items()}


def grouped_order(lengths: torch.Tensor, batch_size: int, generator: torch.Generator | None,
                  group_batches: int = 50) -> torch.Tensor:
    """A visiting order whose consecutive ``batch_size`` runs have similar lengths.

    Shuffled (when ``generator`` is given), then sorted by length inside windows of
    ``group_batches`` batches, then the batches of all windows shuffled again: the
    randomness of SGD stays, the padding of each batch nearly goes (Hugging Face's
    ``group_by_length`` does the same with "megabatches").
    """
    n = len(lengths)
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    window = batch_size * group_batches
    runs = []
    for start in range(0, n, window):
        chunk = order[start:start + window]
        chunk = chunk[torch.sort(lengths[chunk], descending=True, stable=True).indices]
        runs += list(chunk.split(batch_size))
    if generator is not None:
        runs = [runs[i] for i in torch.randperm(len(runs), generator=generator).tolist()]
    return torch.cat(runs) if runs else order


def row_lengths(batch: dict) -> torch.Tensor | None:
    """Real tokens per row of a padded text batch (its attention mask), else None."""
    mask = batch.get("attention_mask")
    return None if mask is None or mask.dim() != 2 else mask.sum(-1)


def iterate_batches(batch: dict, batch_size: int, generator: torch.Generator | None = None,
                    group_by_length: bool = False):
    """Yield minibatches of a batch dict, shuffled when a generator is given.

    ``group_by_length``: text batches are grouped by their rows' lengths and trimmed to
    their own longest row, so that little of the compute goes to padding.
    """
    n = batch_length(batch)
    lengths = row_lengths(batch) if group_by_length else None
    if lengths is not None:
        order = grouped_order(lengths, batch_size, generator)
    else:
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    for start in range(0, n, batch_size):
        minibatch = select(batch, order[start:start + batch_size])
        yield trim_padding(minibatch) if lengths is not None else minibatch


def trim_padding(batch: dict) -> dict:
    """A right-padded text batch cut to its longest row (the padding columns carry no loss)."""
    lengths = row_lengths(batch)
    if lengths is None:
        return batch
    width = int(lengths.max()) if len(lengths) else 0
    return {k: (v[:, :width] if k in SEQUENCE_KEYS else v) for k, v in batch.items()}


def padding_ratio(batches) -> float:
    """Padded tokens / real tokens over text batches (1.0 = no padding)."""
    padded = real = 0
    for batch in batches:
        mask = batch["attention_mask"]
        padded += mask.numel()
        real += int(mask.sum())
    return padded / max(real, 1)


def to_device(batch: dict | None, device: torch.device | str) -> dict | None:
    """Every tensor of the batch on ``device`` (no copy when it is already there)."""
    if batch is None:
        return None
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def shard(batch: dict, index: int, count: int) -> dict:
    """The ``index``-th of ``count`` contiguous, near-equal slices of a batch (may be empty).

    A data-parallel job splits every global batch this way: rank r with ``a``
    gradient-accumulation steps takes slices r*a .. r*a + a - 1, so that one worker with
    ``a = k`` and ``k`` workers with ``a = 1`` see exactly the same micro-batches.
    """
    n = batch_length(batch)
    start, stop = (index * n) // count, ((index + 1) * n) // count
    return {k: v[start:stop] for k, v in batch.items()}
