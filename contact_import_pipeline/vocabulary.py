"""The words the pipeline shares with its users: run tags, row reasons, policies and statuses.

One module, so that a tag or a reason is spelled once and every reader (assets, sensors, CLI,
history, tests) agrees on it.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from enum import StrEnum

IMPORT_JOB_NAME = "import_job"
IMPORT_JOB_CELERY_NAME = "import_job_celery"

# Run tags. Every name is namespaced ``contact_import/<name>`` (Dagster: one ``/``, each part at
# most 63 characters of ``[A-Za-z0-9_.-]``).
TAG_PREFIX = "contact_import/"
ORIGIN_TAG = TAG_PREFIX + "origin"  # cli | sensor | graphql; a bare Launchpad launch has none
FILES_TAG = TAG_PREFIX + "files"  # how many imports the run carries
DRY_RUN_TAG = TAG_PREFIX + "dry_run"  # "true" on a run that only predicts (run config dry_run)
# ``execute_job`` picks its run's id itself: this tag, unique to one call of run_import, lets the
# watcher find the run of a file imported with a process per step.
CLI_CALL_TAG = TAG_PREFIX + "cli_call"
# A run may carry files of many workspaces, and a tag key holds one value, so membership is in the
# key: ``contact_import/ws.<workspace_id>=<workspace_id>`` and ``contact_import/file.<slug>=<key>``.
# The UI's filter picks a key (typing filters the list) and then its value.
WORKSPACE_TAG_PREFIX = TAG_PREFIX + "ws."
FILE_TAG_PREFIX = TAG_PREFIX + "file."
# Tag keys Dagster accepts without a warning: 63 characters after the namespace.
_MAX_TAG_NAME = 63
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

# Dagster's own run tags the pipeline reads or sets.
ROOT_RUN_TAG = "dagster/root_run_id"
SENSOR_NAME_TAG = "dagster/sensor_name"
RETRY_NUMBER_TAG = "dagster/retry_number"
WILL_RETRY_TAG = "dagster/will_retry"
MAX_RETRIES_TAG = "dagster/max_retries"
RETRY_STRATEGY_TAG = "dagster/retry_strategy"


def default_import_tag(moment: datetime) -> str:
    """``import:<UTC ISO-8601 seconds>Z``, as in the reference design."""
    return "import:" + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def workspace_tag(workspace_id: str) -> str:
    """The tag key that marks a run as carrying a file of ``workspace_id``."""
    return WORKSPACE_TAG_PREFIX + workspace_id


def file_tag(key: str) -> str:
    """The tag key that marks a run as carrying the file ``key``; its value is the key itself.

    Readable (the key with ``/`` as ``.`` and other characters as ``-``) so that typing part of a
    file name in the UI's filter finds it; a long key keeps its start and a digest.
    """
    slug = _SLUG_UNSAFE.sub("-", key.replace("/", "."))
    room = _MAX_TAG_NAME - len("file.")
    if len(slug) > room:
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
        slug = slug[: room - len(digest) - 1] + "." + digest
    return FILE_TAG_PREFIX + slug


class Origin(StrEnum):
    """Who started an import."""

    CLI = "cli"
    SENSOR = "sensor"
    GRAPHQL = "graphql"
    LAUNCHPAD = "launchpad"


class OnDuplicate(StrEnum):
    """What an import does with a phone the workspace already has."""

    SKIP = "skip"
    UPDATE = "update"


class Cleanup(StrEnum):
    """What happens to a source file after its import completed."""

    ARCHIVE = "archive"
    DELETE = "delete"
    KEEP = "keep"


class ImportStatus(StrEnum):
    """An import's status in the ledger.

    ``failed`` is final (a file-level error: the same file would fail again); ``interrupted`` means
    the run stopped around it (crash, database outage) and a re-execution or automatic retry
    finishes it.
    """

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self in (ImportStatus.COMPLETED, ImportStatus.FAILED)


class RunStatus(StrEnum):
    """The run's own progress status (run tag ``contact_import/status``)."""

    INITIALIZING = "initializing"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class Reason(StrEnum):
    """Why a row was not imported. The first two are skips (duplicates), the rest failures."""

    DUPLICATE_IN_FILE = "duplicate_in_file"
    DUPLICATE_EXISTING = "duplicate_existing"
    MISSING_PHONE = "missing_phone"
    INVALID_PHONE = "invalid_phone"
    WRONG_FIELD_COUNT = "wrong_field_count"
    FIELD_TOO_LONG = "field_too_long"
    NUL_CHARACTER = "nul_character"


SKIP_REASONS: tuple[str, ...] = (Reason.DUPLICATE_IN_FILE, Reason.DUPLICATE_EXISTING)


class DiagnosisCode(StrEnum):
    """What a diagnosis found: stable codes for callers of ``--json`` and the asset checks."""

    DEFAULT_REGION = "default_region"  # phones invalid in the default region are valid in another
    PHONE_COLUMN = "phone_column"  # another column holds many more valid phones than the one used
    DELIMITER = "delimiter"  # a column's header and values hold another delimiter: read with the wrong one
    ENCODING = "encoding"  # cells hold UTF-8 read as Windows-1252 (mojibake such as "Ã©")
    ALREADY_IMPORTED = "already_imported"  # nearly every row is already a contact of the workspace
    MOSTLY_FAILED = "mostly_failed"  # nearly every row failed
