import json

import pyarrow as pa
import pytest
import torch

from mcu_ray.store import CorruptArtifactError, Store


def test_artifact_roundtrip_with_checksums(tmp_path):
    store = Store(str(tmp_path))
    weights = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2])}
    points = pa.table({"t": [0.5], "acc": [0.9]})
    assert not store.has_artifact("ep-1")
    meta = store.save_artifact("ep-1", {"kind": "endpoint", "metrics": {"acc": 1.0}}, weights=weights, points=points)
    assert store.has_artifact("ep-1")
    loaded = store.load_weights("ep-1")
    assert torch.equal(loaded["a"], weights["a"]) and torch.equal(loaded["b"], weights["b"])
    assert store.load_points("ep-1").to_pylist() == [{"t": 0.5, "acc": 0.9}]
    assert set(meta["files"]) == {"weights.safetensors", "points.parquet"}
    assert store.read_meta("ep-1")["metrics"] == {"acc": 1.0}
    # nothing but safetensors, parquet and json lands in storage; no temporary files remain
    names = {p.rsplit("/", 1)[1] for p in store.list_files("artifacts")}
    assert names == {"weights.safetensors", "points.parquet", "meta.json"}
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_corrupt_weights_are_detected(tmp_path):
    store = Store(str(tmp_path))
    store.save_artifact("ep-2", {}, weights={"w": torch.ones(100)})
    path = tmp_path / "artifacts" / "ep-2" / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    with pytest.raises(CorruptArtifactError, match="ep-2"):
        store.load_weights("ep-2")


def test_meta_written_last_marks_completion(tmp_path):
    store = Store(str(tmp_path))
    store.write_bytes(b"partial", "artifacts", "ep-3", "weights.safetensors")
    assert not store.has_artifact("ep-3")  # payload without meta.json: not complete


def test_result_tables_one_flat_file_per_key_and_a_torn_file_is_not_done(tmp_path):
    store = Store(str(tmp_path))
    store.write_table(pa.table({"task": ["a"], "x": [1.0]}), "sw", "results", "cell-1")
    store.write_table(pa.table({"task": ["b"], "x": [2.0]}), "sw", "results", "cell-2")
    store.write_table(pa.table({"task": ["b"], "x": [3.0]}), "sw", "results", "cell-2")
    assert store.has_table("sw", "results", "cell-1") and not store.has_table("sw", "results", "cell-3")
    assert (tmp_path / "sw" / "results" / "cell-1.parquet").is_file()  # no task=/setting= folders
    assert [p.rsplit("/", 1)[1] for p in store.table_files("sw", "results")] == ["cell-1.parquet", "cell-2.parquet"]
    torn = tmp_path / "sw" / "results" / "cell-2.parquet"
    torn.write_bytes(torn.read_bytes()[:30])
    assert not store.has_table("sw", "results", "cell-2")


def test_job_ledger(tmp_path):
    store = Store(str(tmp_path))
    store.record_job("ep-1", "endpoint")
    store.record_job("ep-1", "endpoint")
    records = store.job_records()
    assert [r["key"] for r in records] == ["ep-1", "ep-1"]
    assert len({r["job_id"] for r in records}) == 2
    json.dumps(records)
