"""Step outputs of runs, stored by run id: pickled with out-of-band buffers, in a local folder, in
the S3 bucket, or in the run's own memory.

Pickling. Python's own pickling of a DataFrame of Arrow-backed text copies each column into the
pickle stream first, which at a million rows adds ~400 MB to a step's peak memory. Pickle
protocol 5 hands those buffers out instead ("out-of-band"): they are written as they are and read
back as views of one read. DataFrames travel as Arrow tables, because pandas itself copies Arrow
columns when pickled.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import pickle
import shutil
import struct
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa

from contact_import_pipeline.storage.bucket import S3Bucket


class OutputMissing(KeyError):
    """A step output that is not where it should be."""


MAGIC = b"CIOOB1\n"  # marks files written by dump
_COUNTS = struct.Struct("<QQ")
_LENGTH = struct.Struct("<Q")
LOCAL_OUTPUTS_FOLDER = "contact_import_outputs"
BUCKET_OUTPUTS_PREFIX = "_contact_import_outputs/"


def _frame_from_table(table: pa.Table) -> pd.DataFrame:
    """Rebuild a frame pickled as an Arrow table, text columns as pandas' Arrow-backed ``str``."""
    text = pd.StringDtype("pyarrow", na_value=np.nan)
    return table.to_pandas(
        types_mapper=lambda t: text if pa.types.is_string(t) or pa.types.is_large_string(t) else None
    )


class _FramePickler(pickle.Pickler):
    """Pickles plain DataFrames (default index, text column names) as Arrow tables."""

    def reducer_override(self, obj: Any) -> Any:
        if (
            isinstance(obj, pd.DataFrame)
            and obj.index.equals(pd.RangeIndex(len(obj)))
            and obj.columns.is_unique
            and all(isinstance(name, str) for name in obj.columns)
        ):
            return _frame_from_table, (_compact(pa.Table.from_pandas(obj, preserve_index=False)),)
        return NotImplemented


def _compact(table: pa.Table) -> pa.Table:
    """The table with buffers of its own rows only. A batch is a slice of its stage's columns, and
    Arrow pickles a slice's whole buffers: each 100k-row batch of a 1M-row file would be written
    (and read back by its insert step) as ~190 MB instead of ~20 MB."""
    if table.get_total_buffer_size() <= 2 * table.nbytes:
        return table
    return table.take(np.arange(table.num_rows))


def dump(obj: Any, file: BinaryIO) -> None:
    """Write ``obj`` as a protocol-5 pickle followed by its out-of-band buffers."""
    buffers: list[pickle.PickleBuffer] = []
    stream = io.BytesIO()
    _FramePickler(stream, protocol=5, buffer_callback=buffers.append).dump(obj)
    head = stream.getbuffer()
    views = [buffer.raw() for buffer in buffers]
    file.write(MAGIC)
    file.write(_COUNTS.pack(len(head), len(views)))
    for view in views:
        file.write(_LENGTH.pack(view.nbytes))
    file.write(head)
    for view in views:
        file.write(view)


def load(data: bytes) -> Any:
    """Read what ``dump`` wrote; the buffers are views into ``data``, not copies."""
    if not data.startswith(MAGIC):
        return pickle.loads(data)
    view = memoryview(data)
    offset = len(MAGIC)
    head_length, count = _COUNTS.unpack_from(view, offset)
    offset += _COUNTS.size
    lengths = [_LENGTH.unpack_from(view, offset + i * _LENGTH.size)[0] for i in range(count)]
    offset += count * _LENGTH.size
    head = view[offset : offset + head_length]
    offset += head_length
    buffers = []
    for length in lengths:
        buffers.append(view[offset : offset + length])
        offset += length
    return pickle.loads(head, buffers=buffers)


class OutputStore(ABC):
    """Where step outputs of runs are kept, by run id."""

    @abstractmethod
    def write(self, path: str, obj: Any) -> None:
        """Store ``obj`` at ``<run id>/<step>/<output>``."""

    @abstractmethod
    def read(self, path: str) -> Any:
        """The object stored at ``path``."""

    @abstractmethod
    def runs(self) -> dict[str, float]:
        """Run ids that have outputs, with the time their newest output was written."""

    @abstractmethod
    def delete_runs(self, run_ids: Iterable[str]) -> None:
        """Delete every output of these runs."""


class LocalOutputs(OutputStore):
    """Outputs as files under a folder of the Dagster instance."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def write(self, path: str, obj: Any) -> None:
        target = self.base / path
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as file:
            dump(obj, file)

    def read(self, path: str) -> Any:
        return load((self.base / path).read_bytes())

    def runs(self) -> dict[str, float]:
        if not self.base.is_dir():
            return {}
        found = {}
        for folder in self.base.iterdir():
            stamps = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()] or [folder.stat().st_mtime]
            found[folder.name] = max(stamps)
        return found

    def delete_runs(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            shutil.rmtree(self.base / run_id, ignore_errors=True)


class BucketOutputs(OutputStore):
    """Outputs as objects under a prefix of the S3 bucket, shared by workers on every machine."""

    def __init__(self, bucket: S3Bucket) -> None:
        self.bucket = bucket

    def write(self, path: str, obj: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="contact-import-output-") as folder:
            local = Path(folder, "output")
            with open(local, "wb") as file:
                dump(obj, file)
            self.bucket.upload_file(BUCKET_OUTPUTS_PREFIX + path, local)

    def read(self, path: str) -> Any:
        with tempfile.TemporaryDirectory(prefix="contact-import-output-") as folder:
            local = Path(folder, "output")
            self.bucket.download_file(BUCKET_OUTPUTS_PREFIX + path, local)
            return load(local.read_bytes())

    def runs(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for obj in self.bucket.list_objects(BUCKET_OUTPUTS_PREFIX):
            run_id = obj.key[len(BUCKET_OUTPUTS_PREFIX) :].split("/", 1)[0]
            found[run_id] = max(found.get(run_id, 0.0), obj.last_modified)
        return found

    def delete_runs(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            self.bucket.delete_prefix(f"{BUCKET_OUTPUTS_PREFIX}{run_id}/")


class MemoryOutputs(OutputStore):
    """Outputs kept in the run's own process: for runs whose steps all execute in one process.

    An output is dropped as soon as every step that reads it has finished (``readers`` says how
    many do), so a big file's stages do not all stay in memory until the run ends. The steps of
    such a run execute one after another, so the outputs read since the last step finished are the
    current step's inputs; a step that fails and is retried reads them again, and nothing goes
    before it succeeds.
    """

    def __init__(self, readers: Callable[[str], int]) -> None:
        self.readers = readers
        self.objects: dict[str, Any] = {}
        self.unread: dict[str, int] = {}  # readers of each output that have not finished yet
        self.reading: set[str] = set()  # outputs the current step has read

    def write(self, path: str, obj: Any) -> None:
        self.objects[path] = obj
        self.unread[path] = self.readers(path)

    def read(self, path: str) -> Any:
        if path not in self.objects:
            raise OutputMissing(
                f"step output {path} is not in this process: a run with in_memory outputs must run "
                "every step in one process and cannot be re-executed from failure; re-execute it with ALL_STEPS"
            )
        self.reading.add(path)
        return self.objects[path]

    def step_finished(self) -> None:
        """The current step succeeded: its inputs lose a reader, and go when none is left."""
        dropped = False
        for path in self.reading:
            self.unread[path] -= 1
            if self.unread[path] <= 0:
                del self.objects[path], self.unread[path]
                dropped = True
        self.reading.clear()
        if dropped:
            release_freed_memory()

    def runs(self) -> dict[str, float]:
        return {}

    def delete_runs(self, run_ids: Iterable[str]) -> None:
        self.objects.clear()


def _libc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, where the C library has it (Linux with glibc)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_trim()


def release_freed_memory() -> None:
    """Hand memory that a dropped stage freed back to the system.

    Arrow's allocator (mimalloc) and glibc's malloc keep freed pages for reuse, so a process that
    has dropped a stage's output still counts it in its resident size. At a million rows that is
    ~250 MB after normalizing; the next stage would then grow on top of it. (No ``gc.collect``: the
    stage values hold no cycles, and a full collection over a big file's objects takes ~0.2 s.)
    """
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
