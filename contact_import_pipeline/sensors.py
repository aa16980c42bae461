"""Sensors: the new-file sensor that turns each upload into one partitioned import run, and the
failure sensor that leaves every failed import marked failed with its reason.

Cursor design. The cursor is the set of ``key -> version`` already requested, kept only for
objects still listed in the imports folders (a processed file moves to ``processed/`` and drops
out). A timestamp cursor would lose files: S3 ``LastModified`` has one-second resolution, and it
is the time an upload *started*, so a long upload can appear after a newer, shorter one. A set
needs no ordering at all, stays bounded by the files waiting in ``imports/``, and lets a
re-uploaded file (new version) run again while the same content never does. ``run_key`` =
``key@version`` is the daemon's second guard against duplicates.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import dagster as dg

from contact_import_pipeline import progress
from contact_import_pipeline.bucket import BucketObject, ContactBucket
from contact_import_pipeline.jobs import import_job
from contact_import_pipeline.keys import (
    IMPORTS_FOLDER,
    PROCESSED_FOLDER,
    REJECTS_FOLDER,
    UnsafeKeyError,
    parse_import_key,
)
from contact_import_pipeline.partitions import contact_files
from contact_import_pipeline.settings import SensorSettings

IMPORT_JOB_NAME = "import_job"
FILE_TAG = "contact_import/file"
WORKSPACE_TAG = "contact_import/workspace"
ORIGIN_TAG = "contact_import/origin"
PARTITION_TAG = "dagster/partition"
# The object version a run imports; lets the sensor skip files already launched by `trigger`.
VERSION_TAG = "contact_import/version"


@dataclass
class FileCursor:
    """What the sensor remembers between ticks, as versions per key."""

    requested: dict[str, str] = field(default_factory=dict)  # a run was requested
    pending: dict[str, str] = field(default_factory=dict)  # seen once, maybe still being written
    refused: dict[str, str] = field(default_factory=dict)  # unsafe key already warned about

    @classmethod
    def parse(cls, raw: str | None) -> FileCursor:
        """The stored cursor; an unreadable one (older format, hand edit) starts afresh, which
        re-requests files still waiting, and the daemon drops those already run by run_key."""
        try:
            data = json.loads(raw or "{}")
            return cls(**{name: dict(data.get(name, {})) for name in ("requested", "pending", "refused")})
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        return json.dumps(
            {"requested": self.requested, "pending": self.pending, "refused": self.refused},
            sort_keys=True,
            separators=(",", ":"),
        )


def is_upload_candidate(key: str) -> bool:
    """Whether ``key`` looks like an upload (a CSV under an imports folder, not a derived file).

    Other keys are ignored silently; candidates that fail parse_import_key are refused loudly.
    """
    parts = key.split("/")
    if IMPORTS_FOLDER not in parts or not key.lower().endswith(".csv"):
        return False
    return parts[parts.index(IMPORTS_FOLDER) + 1] not in (PROCESSED_FOLDER, REJECTS_FOLDER)


def _is_settled(obj: BucketObject, cursor: FileCursor, now: float, settle_seconds: float) -> bool:
    """A folder file is complete once unchanged since the last tick and a little while old."""
    return cursor.pending.get(obj.key) == obj.version and now - obj.last_modified >= settle_seconds


def _already_launched(instance: dg.DagsterInstance, obj: BucketObject) -> bool:
    """Whether a run for this exact file version exists (e.g. launched by `contact-import trigger`)."""
    filters = dg.RunsFilter(tags={FILE_TAG: obj.key, VERSION_TAG: obj.version})
    return bool(instance.get_run_records(filters=filters, limit=1))


@dg.sensor(
    job_name=IMPORT_JOB_NAME,
    minimum_interval_seconds=SensorSettings.from_env().interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_files_sensor(context: dg.SensorEvaluationContext, bucket: ContactBucket) -> dg.SensorResult:
    """Request one import run per new or changed ``<workspace>/imports/<name>.csv``.

    A failed listing raises, so the tick fails visibly and the cursor stays where it was: files
    uploaded during an outage are picked up by the first tick that can list again.
    """
    settings = SensorSettings.from_env()
    objects = list(bucket.list_objects())  # whole listing first: a failure leaves no partial tick
    previous = FileCursor.parse(context.cursor)
    cursor = FileCursor()
    ready: list[BucketObject] = []
    waiting = 0
    now = time.time()
    for obj in objects:
        if not is_upload_candidate(obj.key):
            continue
        try:
            parse_import_key(obj.key)
        except UnsafeKeyError as exc:
            if previous.refused.get(obj.key) != obj.version:
                context.log.warning(f"Refusing to import {obj.key!r}: {exc}")
            cursor.refused[obj.key] = obj.version
            continue
        if previous.requested.get(obj.key) == obj.version:
            cursor.requested[obj.key] = obj.version
        elif not bucket.shows_partial_uploads() or _is_settled(obj, previous, now, settings.settle_seconds):
            ready.append(obj)
        else:
            cursor.pending[obj.key] = obj.version
            waiting += 1

    ready.sort(key=lambda obj: (obj.last_modified, obj.key))
    chosen, deferred = ready[: settings.max_runs_per_tick], ready[settings.max_runs_per_tick :]
    for obj in deferred:  # already settled: keep them ready for the next tick
        cursor.pending[obj.key] = obj.version
    run_requests = []
    for obj in chosen:
        cursor.requested[obj.key] = obj.version
        if _already_launched(context.instance, obj):
            continue
        import_key = parse_import_key(obj.key)
        run_requests.append(
            dg.RunRequest(
                partition_key=obj.key,
                run_key=f"{obj.key}@{obj.version}",
                tags={
                    FILE_TAG: obj.key,
                    VERSION_TAG: obj.version,
                    WORKSPACE_TAG: import_key.workspace_id,
                    ORIGIN_TAG: "sensor",
                },
            )
        )
    if deferred:
        context.log.info(f"{len(deferred)} more new files left for the next ticks")
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=(
            [contact_files.build_add_request([obj.key for obj in chosen])] if chosen else []
        ),
        skip_reason=None if chosen else f"no new files ({waiting} still being written)",
        cursor=cursor.dump(),
    )


def failure_reason(context: dg.RunFailureSensorContext) -> str:
    """The failed steps' own messages (a dg.Failure's description, else the innermost exception)."""
    reasons = [progress.describe_step_failure(event)[0] for event in context.get_step_failure_events()]
    return "; ".join(reasons) or context.failure_event.message or "the run failed"


@dg.run_failure_sensor(monitored_jobs=[import_job], default_status=dg.DefaultSensorStatus.RUNNING)
def import_failure_sensor(context: dg.RunFailureSensorContext) -> None:
    """Leave every failed import with ``status=failed`` and its reason, and say who is affected.

    The import's own code marks the file-level errors it catches; this covers what it cannot:
    a crashed or killed run worker, a database outage after the retries, a bug.
    """
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    current = progress.read_progress(run.tags)
    reason = current.get("error") or failure_reason(context)
    if current.get("status") != "failed" or not current.get("error"):
        progress.report(context.instance, run.run_id, status="failed", error=reason)
    file = run.tags.get(FILE_TAG) or run.tags.get(PARTITION_TAG) or "(unknown file)"
    workspace = run.tags.get(WORKSPACE_TAG) or "(unknown workspace)"
    context.log.error(f"contact import failed: run {run.run_id}, file {file}, workspace {workspace}: {reason}")
