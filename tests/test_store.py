import hashlib
import json

import pyarrow as pa
import pytest
import torch

from mcu_ray.store import ArtifactStatus, CorruptArtifactError, State, Store


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


def test_status_of_a_missing_and_a_healthy_artifact(tmp_path):
    """Missing until meta.json is written (a payload alone is a build that stopped); healthy once its
    meta.json lists every file with the SHA-256 of the bytes on disk (computed here by hashlib)."""
    store = Store(str(tmp_path))
    assert store.status("ep-1") == ArtifactStatus("ep-1", State.MISSING)
    store.write_bytes(b"partial", "artifacts", "ep-1", "weights.safetensors")
    assert store.status("ep-1").state is State.MISSING and not store.status("ep-1").whole
    store.save_artifact("ep-1", {"kind": "endpoint"}, weights={"w": torch.ones(4)},
                        examples=pa.table({"index": [0, 1], "loss": [0.5, 0.25]}))
    folder = tmp_path / "artifacts" / "ep-1"
    listed = json.loads((folder / "meta.json").read_text())["files"]
    assert listed == {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                      for name in ("weights.safetensors", "examples.parquet")}
    status = store.status("ep-1")
    assert status == ArtifactStatus("ep-1", State.HEALTHY) and status.whole and not status.failed


def test_status_of_a_diverged_artifact_and_the_first_failed_input(tmp_path):
    """A failure its job recorded (no weights, a reason) is whole (nothing to rebuild) and failed, and
    reads 'key diverged: reason' in rows, the report and errors; ``first_failed`` finds it among inputs
    in their order and reads meta.json alone."""
    store = Store(str(tmp_path))
    store.save_artifact("orig-1", {"kind": "original"}, weights={"w": torch.ones(4)})
    store.save_artifact("ep-2", {"kind": "endpoint", "status": "diverged", "reason": "loss is nan at step 3"})
    store.save_artifact("ep-3", {"kind": "endpoint", "status": "diverged", "reason": "loss is inf at step 9"})
    status = store.status("ep-2")
    assert status == ArtifactStatus("ep-2", State.DIVERGED, "loss is nan at step 3")
    assert status.whole and status.failed
    assert str(status) == "ep-2 diverged: loss is nan at step 3"
    assert store.first_failed("orig-1", "ep-missing", "ep-3", "ep-2") == store.status("ep-3")
    assert store.first_failed("orig-1", "ep-missing") is None


def test_status_of_a_corrupt_artifact_after_a_byte_flip(tmp_path):
    """One flipped byte in the weights (same length, so only the checksum can tell) makes the artifact
    corrupt, as does a listed file that is gone or a meta.json that does not parse; ``checksums=False``
    reads meta.json alone and so still sees what its job recorded."""
    store = Store(str(tmp_path))
    store.save_artifact("ep-4", {"kind": "endpoint"}, weights={"w": torch.arange(64.0)})
    weights = tmp_path / "artifacts" / "ep-4" / "weights.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    weights.write_bytes(bytes(blob))
    recorded = store.read_meta("ep-4")["files"]["weights.safetensors"]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() != recorded
    status = store.status("ep-4")
    assert status == ArtifactStatus("ep-4", State.CORRUPT, "weights.safetensors: checksum mismatch")
    assert not status.whole and not status.failed
    assert store.status("ep-4", checksums=False).state is State.HEALTHY
    weights.unlink()
    assert store.status("ep-4") == ArtifactStatus("ep-4", State.CORRUPT, "weights.safetensors missing")
    meta = tmp_path / "artifacts" / "ep-4" / "meta.json"
    meta.write_bytes(meta.read_bytes()[:20])  # torn
    assert store.status("ep-4", checksums=False) == ArtifactStatus("ep-4", State.CORRUPT,
                                                                   "meta.json unreadable (JSONDecodeError)")
