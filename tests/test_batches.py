"""Batch dicts: minibatches in order or shuffled by the generator, length grouping within windows,
trimming to the longest row, padding ratios and contiguous shards, each against its rule by hand."""
import torch

from mcu_ray.batches import (
    batch_length, grouped_order, iterate_batches, padding_ratio, select, shard, to_device, trim_padding,
)


def text_batch(lengths: list[int], width: int) -> dict:
    """Right-padded rows of the given lengths: ids 7 on real tokens, 0 on padding; a per-row label."""
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    return {"input_ids": mask * 7, "attention_mask": mask, "labels": mask * 7, "row": torch.arange(len(lengths))}


def test_minibatches_in_order_or_in_the_generators_permutation():
    batch = {"x": torch.arange(7), "y": torch.arange(7) * 10}
    assert batch_length(batch) == 7
    assert [b["x"].tolist() for b in iterate_batches(batch, 3)] == [[0, 1, 2], [3, 4, 5], [6]]
    shuffled = [b for b in iterate_batches(batch, 3, torch.Generator().manual_seed(5))]
    expected = torch.randperm(7, generator=torch.Generator().manual_seed(5))
    assert torch.cat([b["x"] for b in shuffled]).tolist() == expected.tolist()
    assert all((b["y"] == b["x"] * 10).all() for b in shuffled)  # rows stay whole
    assert select(batch, torch.tensor([4, 1]))["y"].tolist() == [40, 10]


def test_grouped_order_sorts_lengths_within_windows_of_batches():
    """No generator: the rows in order, sorted longest first inside each window of batch_size * group_batches."""
    lengths = torch.tensor([1, 5, 3, 2, 4, 6])
    assert grouped_order(lengths, 2, None).tolist() == [5, 1, 4, 2, 3, 0]  # one window
    assert grouped_order(lengths, 2, None, group_batches=1).tolist() == [1, 0, 2, 3, 5, 4]  # windows of 2 rows
    shuffled = grouped_order(lengths, 2, torch.Generator().manual_seed(0))
    assert sorted(shuffled.tolist()) == list(range(6))
    runs = shuffled.split(2)
    assert sorted(tuple(sorted(lengths[r].tolist())) for r in runs) == [(1, 2), (3, 4), (5, 6)]  # similar lengths


def test_grouped_text_batches_are_trimmed_to_their_longest_row():
    batch = text_batch([2, 9, 3, 8], width=10)
    batches = list(iterate_batches(batch, 2, None, group_by_length=True))
    assert [b["row"].tolist() for b in batches] == [[1, 3], [2, 0]]
    assert [b["input_ids"].shape[1] for b in batches] == [9, 3]
    assert padding_ratio(batches) == (2 * 9 + 2 * 3) / (2 + 9 + 3 + 8)
    assert trim_padding({"x": torch.ones(2, 5)})["x"].shape == (2, 5)  # no attention mask: as it is


def test_length_grouped_text_batches_waste_little_on_padding():
    """Rows of 5..60 tokens: batches of random rows pad to ~2x; grouped by length, under 1.25x."""
    lengths = torch.randint(5, 61, (400,), generator=torch.Generator().manual_seed(0))
    mask = (torch.arange(60)[None, :] < lengths[:, None]).long()
    batch = {"input_ids": mask * 7, "attention_mask": mask, "labels": mask * 7}
    generator = torch.Generator().manual_seed(0)
    plain = padding_ratio(iterate_batches(batch, 32, generator))
    grouped = list(iterate_batches(batch, 32, generator, group_by_length=True))
    assert plain > 1.5 and padding_ratio(grouped) <= 1.25
    assert sorted(i for b in grouped for i in b["attention_mask"].sum(-1).tolist()) == sorted(lengths.tolist())


def test_shards_are_contiguous_and_near_equal():
    """Slice i of k covers rows floor(i n / k) .. floor((i + 1) n / k) - 1; a shard may be empty."""
    batch = {"x": torch.arange(5)}
    assert [shard(batch, i, 2)["x"].tolist() for i in range(2)] == [[0, 1], [2, 3, 4]]
    assert [len(shard(batch, i, 8)["x"]) for i in range(8)] == [0, 1, 0, 1, 1, 0, 1, 1]
    assert to_device(None, "cpu") is None
