"""Import options: the Launchpad/GraphQL run config, per-upload options, and their validation.

Precedence, highest first: run config, the upload's own options (sidecar ``<name>.csv.json`` or S3
object metadata), then the defaults below. Everything is validated before any row is read.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import dagster as dg
from pydantic import Field

from contact_import_pipeline.errors import OptionsError
from contact_import_pipeline.keys import UnsafeKeyError, parse_import_key
from contact_import_pipeline.phones import is_valid_region, normalize_phone
from contact_import_pipeline.settings import DEFAULT_BATCH_SIZE, DEFAULT_REGION

ON_DUPLICATE_CHOICES = ("skip", "update")
CLEANUP_CHOICES = ("archive", "delete", "keep")
CLEANUP_ENV = "CONTACT_IMPORT_CLEANUP"
# Options an upload may carry in its sidecar or S3 metadata.
UPLOAD_OPTION_KEYS = ("import_tag", "board_phone_number", "user_id", "default_region", "column_mapping")
MAX_IMPORT_TAG_CHARS = 200
MAX_BATCH_SIZE = 200_000


class ImportOptions(dg.Config):
    """How to import one file. Every field is optional; empty means "use the default"."""

    workspace_id: str = Field(
        default="",
        description="Workspace the contacts belong to. It is the first folder of the partition key "
        "(<workspace_id>/imports/<name>.csv); if given here it must match.",
    )
    source: str = Field(
        default="",
        description="Where to read the CSV. Default: the partition's object in the bucket. "
        "May be an http(s):// URL (e.g. a signed storage URL).",
    )
    import_tag: str = Field(
        default="",
        description="Tag added to every imported contact. Default: import:<UTC time of the import>Z.",
    )
    board_phone_number: str = Field(
        default="",
        description="Optional board phone number, normalized to E.164 and stored in metadata.board_phone_number.",
    )
    user_id: str = Field(default="", description="Optional id of the user who started the import (recorded only).")
    default_region: str = Field(
        default="",
        description=f"Region (ISO 3166 alpha-2) for national phone numbers when a row has no country. Default: {DEFAULT_REGION}.",
    )
    column_mapping: dict[str, str] = Field(
        default_factory=dict,
        description="Explicit mapping from contact field (firstname, lastname, email, phone, country, full_name, "
        "lead_source, market, product, lead_status, st_address, city, state, zip) to a header of the file. "
        "Overrides the built-in header synonyms.",
    )
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE,
        description=f"Contacts per insert batch; each batch is one transaction and one step. Default: {DEFAULT_BATCH_SIZE}.",
    )
    on_duplicate: str = Field(
        default="skip",
        description="What to do with a phone that already exists in the workspace: 'skip' (default) or 'update' "
        "(fill its empty fields and add the import tag; never overwrite a value).",
    )
    cleanup: str = Field(
        default="",
        description="What happens to the source file after a successful import: 'archive' (move to "
        "<workspace_id>/imports/processed/), 'delete' or 'keep'. Default: $CONTACT_IMPORT_CLEANUP or 'archive'.",
    )


@dataclass(frozen=True)
class ResolvedOptions:
    """Validated options of one import, with every default filled in."""

    workspace_id: str
    partition_key: str
    source: str
    import_tag: str
    board_phone_number: str | None
    user_id: str | None
    default_region: str
    column_mapping: dict[str, str] = field(default_factory=dict)
    batch_size: int = DEFAULT_BATCH_SIZE
    on_duplicate: str = "skip"
    cleanup: str = "archive"

    @property
    def reads_bucket(self) -> bool:
        """True when the source is the partition's own bucket object (the only one cleaned up)."""
        return not self.source


def default_import_tag(now: datetime | None = None) -> str:
    """``import:<UTC ISO-8601 seconds>Z``, as in the reference design."""
    moment = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return "import:" + moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise OptionsError(f"option {name} must be text, got {type(value).__name__}")
    return value.strip()


def _check_printable(value: str, name: str) -> None:
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise OptionsError(f"option {name} contains a control character")


def resolve_options(
    config: ImportOptions, partition_key: str, upload_options: dict[str, Any], started_at: datetime | None = None
) -> ResolvedOptions:
    """Merge run config over upload options over defaults, and validate the result.

    ``started_at`` dates the default import tag; re-executions pass their root run's start so
    every row of one import carries the same tag.
    """
    unknown = sorted(set(upload_options) - set(UPLOAD_OPTION_KEYS))
    if unknown:
        raise OptionsError(
            f"upload options for {partition_key} have unknown keys {unknown}; allowed: {list(UPLOAD_OPTION_KEYS)}"
        )

    def pick(name: str) -> Any:
        explicit = getattr(config, name)
        return explicit if explicit else upload_options.get(name)

    source = _text(config.source, "source")
    workspace_id = _text(config.workspace_id, "workspace_id")
    try:
        key_workspace = parse_import_key(partition_key).workspace_id
    except UnsafeKeyError as exc:
        raise OptionsError(f"cannot import {partition_key!r}: {exc}") from exc
    if workspace_id and workspace_id != key_workspace:
        raise OptionsError(
            f"workspace_id {workspace_id!r} does not match the file's workspace {key_workspace!r} ({partition_key})"
        )
    workspace_id = key_workspace

    import_tag = _text(pick("import_tag"), "import_tag") or default_import_tag(started_at)
    _check_printable(import_tag, "import_tag")
    if len(import_tag) > MAX_IMPORT_TAG_CHARS:
        raise OptionsError(f"import_tag is {len(import_tag)} characters; the limit is {MAX_IMPORT_TAG_CHARS}")

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

    on_duplicate = config.on_duplicate.strip().lower() or "skip"
    if on_duplicate not in ON_DUPLICATE_CHOICES:
        raise OptionsError(f"on_duplicate must be one of {ON_DUPLICATE_CHOICES}, got {config.on_duplicate!r}")
    cleanup = (config.cleanup.strip().lower() or os.environ.get(CLEANUP_ENV, "").strip().lower() or "archive")
    if cleanup not in CLEANUP_CHOICES:
        raise OptionsError(f"cleanup must be one of {CLEANUP_CHOICES}, got {cleanup!r}")
    if not 1 <= config.batch_size <= MAX_BATCH_SIZE:
        raise OptionsError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {config.batch_size}")
    user_id = _text(pick("user_id"), "user_id") or None
    if user_id:
        _check_printable(user_id, "user_id")

    return ResolvedOptions(
        workspace_id=workspace_id,
        partition_key=partition_key,
        source=source,
        import_tag=import_tag,
        board_phone_number=board,
        user_id=user_id,
        default_region=region,
        column_mapping=dict(mapping),
        batch_size=config.batch_size,
        on_duplicate=on_duplicate,
        cleanup=cleanup,
    )
