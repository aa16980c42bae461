"""Import history, read from Dagster's run storage; undo records live there too.

No table of our own: every import run carries ``contact_import/*`` tags (workspace, import tag,
file, status and counts, written by the assets on every run whoever launched it), so the runs of
``import_job`` filtered by the workspace tag *are* the history. A re-execution copies its parent's
tags and shares its root run id; history shows one entry per root run, from its latest run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from contact_import_pipeline.progress import TAG_PREFIX, read_progress
from contact_import_pipeline.sensors import IMPORT_JOB_NAME, ORIGIN_TAG, WORKSPACE_TAG

IMPORT_TAG_TAG = TAG_PREFIX + "import_tag"
UNDONE_AT_TAG = TAG_PREFIX + "undone_at"
UNDONE_COUNT_TAG = TAG_PREFIX + "undone_count"
ROOT_RUN_TAG = "dagster/root_run_id"
SENSOR_NAME_TAG = "dagster/sensor_name"
COUNTS = ("total", "imported", "updated", "skipped", "failed")
# Dagster run statuses that say more than the progress tag (a crashed run never wrote "failed").
_RUN_STATUS = {
    dg.DagsterRunStatus.QUEUED: "queued",
    dg.DagsterRunStatus.NOT_STARTED: "queued",
    dg.DagsterRunStatus.STARTING: "starting",
    dg.DagsterRunStatus.FAILURE: "failed",
    dg.DagsterRunStatus.CANCELING: "canceled",
    dg.DagsterRunStatus.CANCELED: "canceled",
}


@dataclass(frozen=True)
class ImportEntry:
    """One import as history shows it."""

    import_tag: str
    file: str
    workspace_id: str
    status: str
    started_at: str | None
    ended_at: str | None
    total: int
    imported: int
    updated: int
    skipped: int
    failed: int
    run_id: str
    origin: str
    undone_at: str | None
    undone_count: int | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds") if timestamp else None


def _origin(tags: dict[str, str]) -> str:
    """cli, sensor and graphql tag themselves; a bare Launchpad launch carries none of our tags."""
    if ORIGIN_TAG in tags:
        return tags[ORIGIN_TAG]
    return "sensor" if SENSOR_NAME_TAG in tags else "launchpad"


def _entry(record: dg.RunRecord) -> ImportEntry:
    run = record.dagster_run
    tags = dict(run.tags)
    progress = read_progress(tags)
    status = _RUN_STATUS.get(run.status) or progress.get("status") or run.status.value.lower()
    return ImportEntry(
        import_tag=tags.get(IMPORT_TAG_TAG, ""),
        file=tags.get(TAG_PREFIX + "file", tags.get("dagster/partition", "")),
        workspace_id=tags.get(WORKSPACE_TAG, ""),
        status=status,
        started_at=_iso(record.start_time),
        ended_at=_iso(record.end_time),
        **{name: int(progress.get(name, 0)) for name in COUNTS},
        run_id=run.run_id,
        origin=_origin(tags),
        undone_at=tags.get(UNDONE_AT_TAG),
        undone_count=int(tags[UNDONE_COUNT_TAG]) if UNDONE_COUNT_TAG in tags else None,
        error=tags.get(TAG_PREFIX + "error"),
    )


def _records(instance: dg.DagsterInstance, workspace_id: str, import_tag: str | None = None) -> list[dg.RunRecord]:
    """Runs of the import job in the workspace (optionally of one import tag), newest first."""
    tags = {WORKSPACE_TAG: workspace_id} | ({IMPORT_TAG_TAG: import_tag} if import_tag is not None else {})
    return list(instance.get_run_records(filters=dg.RunsFilter(job_name=IMPORT_JOB_NAME, tags=tags)))


def list_imports(instance: dg.DagsterInstance, workspace_id: str) -> list[ImportEntry]:
    """The workspace's imports, newest first, one entry per import (its latest re-execution)."""
    latest: dict[str, dg.RunRecord] = {}
    for record in _records(instance, workspace_id):
        root = record.dagster_run.tags.get(ROOT_RUN_TAG, record.dagster_run.run_id)
        if root not in latest or record.create_timestamp > latest[root].create_timestamp:
            latest[root] = record
    ordered = sorted(latest.values(), key=lambda r: r.create_timestamp, reverse=True)
    return [_entry(record) for record in ordered]


def undone_at(instance: dg.DagsterInstance, workspace_id: str, import_tag: str) -> str | None:
    """When this import was first undone, if it was."""
    stamps = [r.dagster_run.tags[UNDONE_AT_TAG] for r in _records(instance, workspace_id, import_tag) if UNDONE_AT_TAG in r.dagster_run.tags]
    return min(stamps) if stamps else None


def record_undo(instance: dg.DagsterInstance, workspace_id: str, import_tag: str, deleted: int) -> int:
    """Tag every run of the import with the undo time and count; returns how many runs were tagged.

    A repeated undo that deleted nothing leaves the first record as it is (undo is idempotent).
    """
    records = _records(instance, workspace_id, import_tag)
    if deleted == 0 and any(UNDONE_AT_TAG in r.dagster_run.tags for r in records):
        return 0
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for record in records:
        instance.add_run_tags(record.dagster_run.run_id, {UNDONE_AT_TAG: stamp, UNDONE_COUNT_TAG: str(deleted)})
    return len(records)
