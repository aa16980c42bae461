"""Bucket key layout and the validation that keeps one workspace's files out of another's.

Uploads live at ``<workspace_id>/imports/<name>.csv``. Derived objects sit beside them:
``processed/`` (archived sources), ``rejects/`` (rejects files), and ``<name>.csv.json`` (options).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from contact_import_pipeline.errors import OptionsError

# Workspace ids are UUIDs or short slugs in the product; anything else is refused so that a key
# can never climb out of its workspace folder or smuggle separators.
WORKSPACE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
IMPORTS_FOLDER = "imports"
PROCESSED_FOLDER = "processed"
REJECTS_FOLDER = "rejects"
OPTIONS_SUFFIX = ".json"


class UnsafeKeyError(ValueError):
    """A bucket key outside the layout or with characters that could escape it."""


def validate_workspace_id(workspace_id: str) -> str:
    """Return the workspace id, or raise OptionsError saying what a valid one looks like."""
    if not WORKSPACE_ID_PATTERN.fullmatch(workspace_id or ""):
        raise OptionsError(
            f"workspace id {workspace_id!r} is invalid: use 1-64 letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return workspace_id


@dataclass(frozen=True)
class ImportKey:
    """A parsed upload key ``<workspace_id>/imports/<name>``."""

    workspace_id: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.workspace_id}/{IMPORTS_FOLDER}/{self.name}"

    @property
    def processed_key(self) -> str:
        return f"{self.workspace_id}/{IMPORTS_FOLDER}/{PROCESSED_FOLDER}/{self.name}"

    @property
    def rejects_key(self) -> str:
        stem = self.name[:-4] if self.name.lower().endswith(".csv") else self.name
        return f"{self.workspace_id}/{IMPORTS_FOLDER}/{REJECTS_FOLDER}/{stem}-rejects.csv"

    @property
    def options_key(self) -> str:
        return self.key + OPTIONS_SUFFIX


def _check_safe(key: str) -> None:
    if not key:
        raise UnsafeKeyError("empty key")
    for ch in key:
        if unicodedata.category(ch).startswith("C"):
            raise UnsafeKeyError(f"key {key!r} contains a control character")
    if "\\" in key or "%" in key:
        raise UnsafeKeyError(f"key {key!r} contains '\\' or '%'")
    if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise UnsafeKeyError(f"key {key!r} has an empty, '.' or '..' segment")


def check_safe_key(key: str) -> str:
    """Return ``key`` if it cannot climb out of its folder or smuggle separators; else raise.

    Public so storage backends refuse the same keys the parser refuses, for any folder.
    """
    _check_safe(key)
    return key


def parse_import_key(key: str) -> ImportKey:
    """Parse ``<workspace_id>/imports/<name>.csv``; raise UnsafeKeyError for anything else."""
    _check_safe(key)
    parts = key.split("/")
    if len(parts) != 3 or parts[1] != IMPORTS_FOLDER:
        raise UnsafeKeyError(f"key {key!r} is not of the form <workspace_id>/imports/<name>.csv")
    if not parts[2].lower().endswith(".csv"):
        raise UnsafeKeyError(f"key {key!r} does not name a .csv file")
    try:
        validate_workspace_id(parts[0])
    except OptionsError as exc:
        raise UnsafeKeyError(f"key {key!r}: {exc}") from exc
    return ImportKey(workspace_id=parts[0], name=parts[2])
