"""Import options: what a file's entry in a run says, and its validation.

Precedence for one file, highest first: the file's entry in run config, the upload's own options
(sidecar ``<name>.csv.json`` or S3 object metadata), then the defaults below. Everything is
validated before any row of that file is read; a bad option fails that file only.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from contact_import_pipeline.errors import OptionsError
from contact_import_pipeline.keys import IMPORTS_FOLDER, UnsafeKeyError, parse_import_key
from contact_import_pipeline.mapping.phones import is_valid_region, normalize_phone
from contact_import_pipeline.settings import DEFAULT_REGION
from contact_import_pipeline.vocabulary import Cleanup, OnDuplicate

CLEANUP_ENV = "CONTACT_IMPORT_CLEANUP"
# Options an upload may carry in its sidecar or S3 metadata.
UPLOAD_OPTION_KEYS = ("import_tag", "board_phone_number", "user_id", "default_region", "column_mapping")
MAX_IMPORT_TAG_CHARS = 200
MAX_BATCH_SIZE = 200_000
# Characters kept when a file name becomes a bucket key (a URL's or a local file's name).
UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._ ()+-]+")


class FileOptions(Protocol):
    """What one file's entry in a run says (``defs.config.FileImport`` in run config, ``FileSpec``
    elsewhere); every option may be empty, meaning the default. Read-only: resolving never changes it."""

    @property
    def key(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def uploaded_at(self) -> float: ...

    @property
    def workspace_id(self) -> str: ...

    @property
    def source(self) -> str: ...

    @property
    def import_tag(self) -> str: ...

    @property
    def board_phone_number(self) -> str: ...

    @property
    def user_id(self) -> str: ...

    @property
    def default_region(self) -> str: ...

    @property
    def column_mapping(self) -> Mapping[str, str]: ...

    @property
    def on_duplicate(self) -> str: ...

    @property
    def cleanup(self) -> str: ...


@dataclass(frozen=True)
class FileSpec:
    """A file's entry built outside Dagster (``contact-import trigger`` checks it before launching)."""

    key: str = ""
    version: str = ""
    uploaded_at: float = 0.0
    workspace_id: str = ""
    source: str = ""
    import_tag: str = ""
    board_phone_number: str = ""
    user_id: str = ""
    default_region: str = ""
    column_mapping: Mapping[str, str] = field(default_factory=dict)
    on_duplicate: str = ""
    cleanup: str = ""


@dataclass(frozen=True)
class ResolvedOptions:
    """Validated options of one import, with every default filled in but the import tag.

    ``import_tag`` is empty when the tag is left to the ledger, which dates it from ``tag_time``
    and keeps it unique in the workspace.
    """

    key: str
    workspace_id: str
    source: str
    import_tag: str
    tag_time: datetime
    board_phone_number: str | None
    user_id: str | None
    default_region: str
    version: str = ""
    column_mapping: dict[str, str] = field(default_factory=dict)
    on_duplicate: str = OnDuplicate.SKIP
    cleanup: str = Cleanup.ARCHIVE

    @property
    def reads_bucket(self) -> bool:
        """True when the source is the key's own bucket object (the only one cleaned up)."""
        return not self.source


def key_for_name(workspace_id: str, name: str) -> str:
    """The bucket key ``<workspace>/imports/<name>.csv`` of a file known by name (URL or local path)."""
    safe = UNSAFE_NAME_CHARS.sub("_", name).strip(" .") or "upload"
    if not safe.lower().endswith(".csv"):
        safe += ".csv"
    return f"{workspace_id}/{IMPORTS_FOLDER}/{safe}"


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def key_for_source(workspace_id: str, source: str) -> str:
    """The key of a URL or local-file source: its file name under the workspace's imports folder."""
    name = Path(urlsplit(source).path).name if is_url(source) else Path(source).name
    return key_for_name(workspace_id, name)


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OptionsError(f"option {name} must be text, got {type(value).__name__}")
    return value.strip()


def _check_printable(value: str, name: str) -> None:
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise OptionsError(f"option {name} contains a control character")


def file_key(config: FileOptions) -> str:
    """The import's bucket key: given, or derived from a URL source and the workspace."""
    key = _text(config.key, "key")
    if key:
        return key
    source, workspace_id = _text(config.source, "source"), _text(config.workspace_id, "workspace_id")
    if source and workspace_id:
        return key_for_source(workspace_id, source)
    raise OptionsError("each file needs a key <workspace_id>/imports/<name>.csv (or a source URL and a workspace_id)")


def check_batch_size(batch_size: int) -> int:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise OptionsError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {batch_size}")
    return batch_size


def resolve_options(config: FileOptions, upload_options: dict[str, Any], run_started: datetime) -> ResolvedOptions:
    """Merge the file's run config over its upload options over defaults, and validate the result."""
    key = file_key(config)
    unknown = sorted(set(upload_options) - set(UPLOAD_OPTION_KEYS))
    if unknown:
        raise OptionsError(f"upload options for {key} have unknown keys {unknown}; allowed: {list(UPLOAD_OPTION_KEYS)}")

    def pick(name: str) -> Any:
        explicit = getattr(config, name)
        return explicit if explicit else upload_options.get(name)

    source = _text(config.source, "source")
    workspace_id = _text(config.workspace_id, "workspace_id")
    try:
        key_workspace = parse_import_key(key).workspace_id
    except UnsafeKeyError as exc:
        raise OptionsError(f"cannot import {key!r}: {exc}") from exc
    if workspace_id and workspace_id != key_workspace:
        raise OptionsError(
            f"workspace_id {workspace_id!r} does not match the file's workspace {key_workspace!r} ({key})"
        )

    import_tag = _text(pick("import_tag"), "import_tag")
    _check_printable(import_tag, "import_tag")
    if len(import_tag) > MAX_IMPORT_TAG_CHARS:
        raise OptionsError(f"import_tag is {len(import_tag)} characters; the limit is {MAX_IMPORT_TAG_CHARS}")
    tag_time = datetime.fromtimestamp(config.uploaded_at, UTC) if config.uploaded_at > 0 else run_started

    region = (_text(pick("default_region"), "default_region") or DEFAULT_REGION).upper()
    if not is_valid_region(region):
        raise OptionsError(f"default_region {region!r} is not a known ISO 3166 region code (e.g. US, GB, DE)")

    board_raw = _text(pick("board_phone_number"), "board_phone_number")
    board = None
    if board_raw:
        board = normalize_phone(board_raw, region)
        if board is None:
            raise OptionsError(f"board_phone_number {board_raw!r} is not a valid phone number (region {region})")

    mapping = pick("column_mapping") or {}
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise OptionsError("column_mapping must be an object of field name -> header name (both text)")

    on_duplicate = _choice(config.on_duplicate, OnDuplicate, OnDuplicate.SKIP, "on_duplicate")
    cleanup = _choice(config.cleanup or os.environ.get(CLEANUP_ENV, ""), Cleanup, Cleanup.ARCHIVE, "cleanup")
    user_id = _text(pick("user_id"), "user_id") or None
    if user_id:
        _check_printable(user_id, "user_id")

    return ResolvedOptions(
        key=key,
        workspace_id=key_workspace,
        source=source,
        import_tag=import_tag,
        tag_time=tag_time,
        board_phone_number=board,
        user_id=user_id,
        default_region=region,
        version=_text(config.version, "version"),
        column_mapping=dict(mapping),
        on_duplicate=on_duplicate,
        cleanup=cleanup,
    )


def _choice(value: str, choices: type[OnDuplicate] | type[Cleanup], default: str, name: str) -> str:
    text = (value or "").strip().lower() or default
    if text not in {c.value for c in choices}:
        raise OptionsError(f"{name} must be one of {tuple(c.value for c in choices)}, got {value!r}")
    return text
