"""Artifact store and result tables, over any pyarrow.fs URI (local, NFS, s3://, gs://).

Layout under the storage root:
  artifacts/<key>/weights.safetensors   model weights (never pickles)
  artifacts/<key>/meta.json             metadata + metrics + sha256 of the weights;
                                        written last, so its presence means "complete"
  artifacts/<key>/points.parquet        evaluated interior points of a curve
  artifacts/<key>/examples.parquet      per-example values of an evaluated model (mcu_ray.tables.EXAMPLE_SCHEMA)
  jobs/<key>/<job id>.json              one record per training job started (a ledger)
  <sweep>/spec.json                     the resolved sweep file and its plan's keys (last run)
  <sweep>/<table>/<key>.parquet         result tables, one file per cell or model (mcu_ray.tables)
  <sweep>/mlruns, <sweep>/tensorboard   a run per cell when the sweep file asks for tracking (mcu_ray.tracking)
Every write goes to a temporary name first and is then moved into place.
"""
from __future__ import annotations

import enum
import hashlib
import io
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from mcu_ray.version import __version__


LEASE_SECONDS = 120.0  # a build lease not renewed for this long is taken over


class CorruptArtifactError(RuntimeError):
    """Stored bytes do not match the checksum in their metadata."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class State(enum.Enum):
    """What the store holds under an artifact key."""

    MISSING = "missing"  # no meta.json: never built, or its job stopped before committing it
    HEALTHY = "healthy"  # built, and every file its meta.json lists matches its checksum
    DIVERGED = "diverged"  # built as a failure: no weights, the reason its job recorded (a NaN loss, a failed input)
    CORRUPT = "corrupt"  # meta.json unreadable, or a file it lists missing or not matching its checksum


@dataclass(frozen=True)
class ArtifactStatus:
    """One artifact's state (``Store.status``); ``reason``: why it diverged, as its job recorded it, or
    what is corrupt."""

    key: str
    state: State
    reason: str = ""

    @property
    def whole(self) -> bool:
        """Stored as its job left it (healthy, or a failure it recorded): nothing to build."""
        return self.state in (State.HEALTHY, State.DIVERGED)

    @property
    def failed(self) -> bool:
        """Stored as a failure: what depends on it is recorded as failed too, with this reason."""
        return self.state is State.DIVERGED

    def __str__(self) -> str:
        """'key state: reason', the reason rows, the report and errors give for a failed artifact."""
        return f"{self.key} {self.state.value}: {self.reason}"


@dataclass
class Store:
    """A storage root. Pickles are never written or read."""

    uri: str

    def __post_init__(self):
        self.uri = _absolute(self.uri)  # workers may run in another directory
        self.fs, self.root = pafs.FileSystem.from_uri(self.uri)

    # ------------------------------------------------------------------ bytes
    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self._path(*parts)).type == pafs.FileType.File

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Atomic write: a temporary sibling, then a move onto the final name."""
        final = self._path(*parts)
        self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, final)

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self._path(*parts)) as src:
            return src.read()

    def list_files(self, *parts: str) -> list[str]:
        selector = pafs.FileSelector(self._path(*parts), recursive=True, allow_not_found=True)
        return sorted(info.path for info in self.fs.get_file_info(selector)
                      if info.type == pafs.FileType.File and ".tmp-" not in info.path)

    def folders(self, *parts: str) -> list[str]:
        """Names of the folders directly under ``parts`` (the sweeps, at the root)."""
        selector = pafs.FileSelector(self._path(*parts), allow_not_found=True)
        return sorted(info.base_name for info in self.fs.get_file_info(selector)
                      if info.type == pafs.FileType.Directory)

    def delete_dir(self, *parts: str) -> None:
        path = self._path(*parts)
        if self.fs.get_file_info(path).type == pafs.FileType.Directory:
            self.fs.delete_dir(path)

    # ------------------------------------------------------------------ artifacts
    def has_artifact(self, key: str) -> bool:
        return self.exists("artifacts", key, "meta.json")

    def read_meta(self, key: str) -> dict:
        return json.loads(self.read_bytes("artifacts", key, "meta.json"))

    def status(self, key: str, checksums: bool = True) -> ArtifactStatus:
        """Whether ``key`` is missing, healthy, diverged or corrupt: the one place that says.

        ``checksums=False``: from meta.json alone (what its job recorded), without reading the files it
        lists; for asking whether an input failed, where its files are not read or are checked as they
        load (``load_weights``...). A failure recorded in meta.json is ``DIVERGED`` whatever its word.
        """
        if not self.has_artifact(key):
            return ArtifactStatus(key, State.MISSING)
        try:
            meta = self.read_meta(key)
            digests = meta["files"].items()
        except (OSError, ValueError, KeyError, AttributeError) as exc:
            return ArtifactStatus(key, State.CORRUPT, f"meta.json unreadable ({type(exc).__name__})")
        for name, digest in digests if checksums else ():
            try:
                whole = _sha256(self.read_bytes("artifacts", key, name)) == digest
            except OSError:
                return ArtifactStatus(key, State.CORRUPT, f"{name} missing")
            if not whole:
                return ArtifactStatus(key, State.CORRUPT, f"{name}: checksum mismatch")
        if meta.get("status", "ok") != "ok":
            return ArtifactStatus(key, State.DIVERGED, meta.get("reason", ""))
        return ArtifactStatus(key, State.HEALTHY)

    def first_failed(self, *keys: str) -> ArtifactStatus | None:
        """The first of ``keys`` stored as a failure (from meta.json alone); None if none is."""
        return next((status for status in (self.status(key, checksums=False) for key in keys) if status.failed),
                    None)

    def discard(self, key: str) -> None:
        """Remove an artifact (a corrupt one, before it is rebuilt); meta.json goes first."""
        for name in ("meta.json", *[p.rsplit("/", 1)[1] for p in self.list_files("artifacts", key)]):
            path = self._path("artifacts", key, name)
            if self.fs.get_file_info(path).type == pafs.FileType.File:
                self.fs.delete_file(path)

    def save_artifact(self, key: str, meta: dict, weights: dict | None = None,
                      points: pa.Table | None = None, examples: pa.Table | None = None) -> dict:
        """Write the payload files, then meta.json (with their checksums) as the commit mark."""
        files = {}
        if weights is not None:
            # clone: safetensors refuses tensors that share memory (tied embeddings)
            blob = save_safetensors({k: v.detach().cpu().clone().contiguous() for k, v in weights.items()})
            self.write_bytes(blob, "artifacts", key, "weights.safetensors")
            files["weights.safetensors"] = _sha256(blob)
        for name, table in (("points.parquet", points), ("examples.parquet", examples)):
            if table is not None:
                sink = io.BytesIO()
                pq.write_table(table, sink)
                self.write_bytes(sink.getvalue(), "artifacts", key, name)
                files[name] = _sha256(sink.getvalue())
        meta = {**meta, "key": key, "files": files, "code_version": __version__, "written_at": time.time()}
        self.write_bytes(json.dumps(meta, indent=1, sort_keys=True, default=str).encode(), "artifacts", key, "meta.json")
        return meta

    def _checked(self, key: str, name: str) -> bytes:
        blob = self.read_bytes("artifacts", key, name)
        expected = self.read_meta(key)["files"].get(name)
        if expected != _sha256(blob):
            raise CorruptArtifactError(f"artifacts/{key}/{name}: checksum mismatch")
        return blob

    def load_weights(self, key: str) -> dict[str, torch.Tensor]:
        return load_safetensors(self._checked(key, "weights.safetensors"))

    def load_points(self, key: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self._checked(key, "points.parquet")))

    def load_examples(self, key: str) -> pa.Table | None:
        """An artifact's per-example values; None when it has none (built before they were stored, or failed)."""
        if "examples.parquet" not in self.read_meta(key).get("files", {}):
            return None
        return pq.read_table(io.BytesIO(self._checked(key, "examples.parquet")))

    # ------------------------------------------------------------------ leases
    def _lease_path(self, key: str) -> str | None:
        """Leases need an exclusive create: local and NFS paths have it, object stores do not."""
        return self._path("leases", f"{key}.lease") if isinstance(self.fs, pafs.LocalFileSystem) else None

    def acquire_lease(self, key: str, owner: str) -> bool:
        """The right to build ``key`` among every driver sharing this store (not only this Ray cluster).

        A lease not renewed for LEASE_SECONDS belongs to a dead builder and is taken
        over. On object stores (s3://, gs://) this is a no-op that always succeeds: one
        driver per store there, or share one Ray cluster, whose coordinator deduplicates.
        """
        path = self._lease_path(key)
        if path is None:
            return True
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    holder, age = open(path).read(), time.time() - os.path.getmtime(path)
                except FileNotFoundError:
                    continue  # released meanwhile: try again
                if holder == owner:
                    return True
                if age < LEASE_SECONDS:
                    return False
                try:
                    os.unlink(path)  # a stale lease
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as out:
                out.write(owner)
            return True
        return False

    def renew_lease(self, key: str) -> None:
        path = self._lease_path(key)
        if path is not None and os.path.exists(path):
            os.utime(path)

    def release_lease(self, key: str, owner: str) -> None:
        path = self._lease_path(key)
        try:
            if path is not None and open(path).read() == owner:
                os.unlink(path)
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ job ledger
    def record_job(self, key: str, kind: str) -> str:
        """Note that a training/evaluation job for ``key`` started (counted by tests and bench)."""
        job_id = uuid.uuid4().hex[:12]
        record = {"key": key, "kind": kind, "job_id": job_id, "started_at": time.time(), "pid": os.getpid(),
                  "host": socket.gethostname()}
        self.write_bytes(json.dumps(record).encode(), "jobs", key, f"{job_id}.json")
        return job_id

    def job_records(self) -> list[dict]:
        root = self._path()
        return [json.loads(self.read_bytes(*p[len(root) + 1:].split("/"))) for p in self.list_files("jobs")]

    # ------------------------------------------------------------------ result tables
    def write_table(self, table: pa.Table, sweep: str, name: str, key: str) -> None:
        """One Parquet file of a table (a cell's or a model's), ``<sweep>/<name>/<key>.parquet``.

        Bytes only: ``mcu_ray.tables`` owns the schemas and is what writes and reads tables.
        """
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.write_bytes(sink.getvalue(), sweep, name, f"{key}.parquet")

    def cell_done(self, sweep: str, cell_key: str, examples=()) -> bool:
        """Whether a cell is done: its results file reads (what a run skips and ``--dry-run`` reports),
        and so does the examples file of each key in ``examples`` (its curves', with ``--per-example``)."""
        return self.has_table(sweep, "results", cell_key) and all(self.has_table(sweep, "examples", key)
                                                                  for key in examples)

    def has_table(self, sweep: str, name: str, key: str) -> bool:
        """Whether the file exists and is a readable Parquet file (a torn one is not)."""
        path = self._path(sweep, name, f"{key}.parquet")
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return False
        try:
            with self.fs.open_input_file(path) as src:
                pq.read_metadata(src)
            return True
        except (OSError, pa.ArrowInvalid):
            return False

    def table_files(self, sweep: str, name: str) -> list[str]:
        """Paths (in ``self.fs``) of every Parquet file of a table, in subfolders too."""
        return [p for p in self.list_files(sweep, name) if p.endswith(".parquet")]

    def delete_empty_dirs(self, *parts: str) -> None:
        """Remove the folders under ``parts`` that hold no file (left by a layout upgrade)."""
        selector = pafs.FileSelector(self._path(*parts), recursive=True, allow_not_found=True)
        folders = [i.path for i in self.fs.get_file_info(selector) if i.type == pafs.FileType.Directory]
        for folder in sorted(folders, key=len, reverse=True):
            if not self.fs.get_file_info(pafs.FileSelector(folder)):
                self.fs.delete_dir(folder)


def _absolute(uri: str) -> str:
    return uri if "://" in uri else os.path.abspath(uri)
