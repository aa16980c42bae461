"""Step outputs on disk without an extra copy of their Arrow columns.

Dagster's filesystem IO manager pickles every step output in one piece. Pickling a DataFrame of
Arrow-backed text copies each column into the pickle stream first, which at a million rows
adds ~400 MB to a step's peak memory. Pickle protocol 5 can hand those buffers out instead
("out-of-band"): they are written to the file as they are and read back as views of one read.
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

import dagster as dg
from dagster._core.storage.fs_io_manager import PickledObjectFilesystemIOManager

MAGIC = b"CIOOB1\n"  # marks files written by this manager; older plain pickles still load
_COUNTS = struct.Struct("<QQ")
_LENGTH = struct.Struct("<Q")


def dump(obj: Any, file: Any) -> None:
    """Write ``obj`` as a protocol-5 pickle followed by its out-of-band buffers."""
    buffers: list[pickle.PickleBuffer] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
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
