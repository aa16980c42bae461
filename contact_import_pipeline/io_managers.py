"""Step outputs on disk without an extra copy of their Arrow columns.

Dagster's filesystem IO manager pickles every step output in one piece. Pickling a DataFrame of
Arrow-backed text copies each column into the pickle stream first, which at a million rows
adds ~400 MB to a step's peak memory. Pickle protocol 5 can hand those buffers out instead
("out-of-band"): they are written to the file as they are and read back as views of one read.
DataFrames travel as Arrow tables, because pandas itself copies Arrow columns when pickled.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

import io

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager

MAGIC = b"CIOOB1\n"  # marks files written by this manager; older plain pickles still load
_COUNTS = struct.Struct("<QQ")
_LENGTH = struct.Struct("<Q")


def _frame_from_table(table: pa.Table) -> pd.DataFrame:
    """Rebuild a frame pickled as an Arrow table, text columns as pandas' Arrow-backed ``str``."""
    text = pd.StringDtype("pyarrow", na_value=np.nan)
    return table.to_pandas(types_mapper=lambda t: text if pa.types.is_string(t) or pa.types.is_large_string(t) else None)


class _FramePickler(pickle.Pickler):
    """Pickles plain DataFrames (default index, text column names) as Arrow tables."""

    def reducer_override(self, obj: Any) -> Any:
        if (
            isinstance(obj, pd.DataFrame)
            and obj.index.equals(pd.RangeIndex(len(obj)))
            and obj.columns.is_unique
            and all(isinstance(name, str) for name in obj.columns)
        ):
            return _frame_from_table, (pa.Table.from_pandas(obj, preserve_index=False),)
        return NotImplemented


def dump(obj: Any, file: Any) -> None:
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


class OutOfBandPickleIOManager(PickledObjectFilesystemIOManager):
    """The filesystem IO manager, writing and reading with ``dump``/``load``."""

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: Any) -> None:
        with path.open("wb") as file:
            dump(obj, file)

    def load_from_path(self, context: dg.InputContext, path: Any) -> Any:
        with path.open("rb") as file:
            return load(file.read())


class ContactImportIOManager(dg.FilesystemIOManager):
    """Same storage location and layout as Dagster's FilesystemIOManager, lighter on memory."""

    def create_io_manager(self, context: dg.InitResourceContext) -> OutOfBandPickleIOManager:
        base_dir = self.base_dir or context.instance.storage_directory()
        return OutOfBandPickleIOManager(base_dir=base_dir)
