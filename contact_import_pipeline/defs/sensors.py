"""Sensors: the new-file sensor that packs uploads into runs, the failure sensor that explains every
interrupted import, and the sweep that deletes step outputs once they are no longer needed.

Cursor design. The cursor is the set of ``key -> version`` already requested, kept only for
objects still listed in the imports folders (a processed file moves to ``processed/`` and drops
out). A timestamp cursor would lose files: S3 ``LastModified`` has one-second resolution, and it
is the time an upload *started*, so a long upload can appear after a newer, shorter one. A set
needs no ordering at all, stays bounded by the files waiting in ``imports/``, and lets a
re-uploaded file (new version) run again while the same content never does. A run's ``run_key``
is a digest of its set of ``key@version``: the daemon's second guard against duplicates.

Packing. Each tick, the files that are ready go into runs in upload order: small files share a
run, up to a cap on files and bytes; a large file gets a run of its own. A run executes in one
process unless it is a file of at least ``CONTACT_STEP_PROCESSES_BYTES``, which gets a process per
step. A workspace's files are imported strictly in upload order, so that its duplicates resolve as
if its files had been imported one after another: a workspace with an unfinished run waits for it,
and a tick gives each workspace one contiguous stretch of its files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa

from contact_import_pipeline.defs import launch, progress
from contact_import_pipeline.defs.io_manager import expired_output_runs, output_store
from contact_import_pipeline.defs.jobs import celery_job, import_job
from contact_import_pipeline.defs.resources import BucketResource, ContactsDatabase
from contact_import_pipeline.keys import (
    IMPORTS_FOLDER,
    PROCESSED_FOLDER,
    REJECTS_FOLDER,
    UnsafeKeyError,
    parse_import_key,
)
from contact_import_pipeline.settings import OUTPUT_SWEEP_SECONDS, SensorSettings, output_retention_seconds
from contact_import_pipeline.storage.bucket import BucketObject
from contact_import_pipeline.storage.ledger import Ledger
from contact_import_pipeline.vocabulary import (
    DRY_RUN_TAG,
    IMPORT_JOB_NAME,
    ORIGIN_TAG,
    WILL_RETRY_TAG,
    WORKSPACE_TAG_PREFIX,
    Origin,
    RunStatus,
)

# Runs launched by `contact-import trigger` are looked up from a little before the last tick, and
# on a sensor's very first tick from this far back.
_TRIGGER_SCAN_MARGIN = timedelta(seconds=60)
_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
_FIRST_TRIGGER_SCAN = timedelta(hours=1)


@dataclass
class FileCursor:
    """What the sensor remembers between ticks, as versions per key."""

    requested: dict[str, str] = field(default_factory=dict)  # a run was requested (or launched by trigger)
    pending: dict[str, str] = field(default_factory=dict)  # seen once, maybe still being written
    refused: dict[str, str] = field(default_factory=dict)  # unsafe key already warned about
    scanned_at: float = 0.0  # when runs launched by trigger were last looked up

    @classmethod
    def parse(cls, raw: str | None) -> FileCursor:
        """The stored cursor; an unreadable one (older format, hand edit) starts afresh, which
        re-requests files still waiting, and the daemon drops those already run by run_key."""
        try:
            data = json.loads(raw or "{}")
            maps = {name: dict(data.get(name, {})) for name in ("requested", "pending", "refused")}
            return cls(**maps, scanned_at=float(data.get("scanned_at", 0.0)))
        except (ValueError, TypeError, AttributeError):
            return cls()

    def dump(self) -> str:
        return json.dumps(
            {
                "requested": self.requested,
                "pending": self.pending,
                "refused": self.refused,
                "scanned_at": self.scanned_at,
            },
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


def launched_by_trigger(instance: dg.DagsterInstance, since: datetime) -> set[tuple[str, str]]:
    """``(key, version)`` of every file in runs `contact-import trigger` launched since ``since``."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=IMPORT_JOB_NAME, tags={ORIGIN_TAG: Origin.GRAPHQL}, created_after=since)
    )
    found = set()
    for record in records:
        run_config: dict[str, Any] = dict(record.dagster_run.run_config)
        config = run_config.get("ops", {}).get("raw_csv", {}).get("config", {})
        for entry in config.get("files", []):
            if entry.get("key") and entry.get("version"):
                found.add((entry["key"], entry["version"]))
    return found


def busy_workspaces(instance: dg.DagsterInstance) -> set[str]:
    """Workspaces with an import run not finished yet (queued, starting or running)."""
    records = instance.get_run_records(filters=dg.RunsFilter(job_name=IMPORT_JOB_NAME, statuses=_UNFINISHED))
    return {
        key[len(WORKSPACE_TAG_PREFIX) :]
        for r in records
        for key in r.dagster_run.tags
        if key.startswith(WORKSPACE_TAG_PREFIX)
    }


def pack(
    ready: list[BucketObject], busy: set[str], settings: SensorSettings
) -> tuple[list[list[BucketObject]], list[BucketObject]]:
    """Group ready files (in upload order) into runs; return (runs, files left for later ticks).

    A workspace's files are imported strictly in upload order: a workspace whose run is not
    finished waits, and otherwise gives this tick one contiguous stretch of its files (small
    files up to the caps, or one large file alone), so two runs never race for its phones.
    Stretches of several workspaces share a run up to the caps.
    """
    by_workspace: dict[str, list[BucketObject]] = {}
    for obj in ready:
        by_workspace.setdefault(parse_import_key(obj.key).workspace_id, []).append(obj)
    stretches: list[list[BucketObject]] = []
    later: list[BucketObject] = []
    for workspace_id, files in by_workspace.items():
        stretch = [] if workspace_id in busy else _stretch(files, settings)
        if stretch:
            stretches.append(stretch)
        later += files[len(stretch) :]
    runs: list[list[BucketObject]] = []
    current: list[BucketObject] = []
    for stretch in stretches:  # each starts with its workspace's oldest ready file: upload order
        if stretch[0].size >= settings.small_file_bytes:
            runs.append(stretch)
            continue
        if current and (
            len(current) + len(stretch) > settings.max_files_per_run
            or _bytes(current) + _bytes(stretch) > settings.max_run_bytes
        ):
            runs.append(current)
            current = []
        current += stretch
    if current:
        runs.append(current)
    order = {obj.key: n for n, obj in enumerate(ready)}
    runs.sort(key=lambda files: order[files[0].key])
    for files in runs[settings.max_runs_per_tick :]:
        later += files
    return runs[: settings.max_runs_per_tick], sorted(later, key=lambda obj: order[obj.key])


def _stretch(files: list[BucketObject], settings: SensorSettings) -> list[BucketObject]:
    """The oldest files of one workspace that can run now: one large file, or small files up to the caps."""
    if files[0].size >= settings.small_file_bytes:
        return files[:1]
    stretch: list[BucketObject] = []
    for obj in files:
        if obj.size >= settings.small_file_bytes or len(stretch) == settings.max_files_per_run:
            break
        if stretch and _bytes(stretch) + obj.size > settings.max_run_bytes:
            break
        stretch.append(obj)
    return stretch


def _bytes(files: list[BucketObject]) -> int:
    return sum(obj.size for obj in files)


def run_request(files: list[BucketObject], settings: SensorSettings) -> dg.RunRequest:
    """One run for these files: in one process, or a process per step for a file of at least
    ``step_processes_bytes``."""
    config = launch.run_config(
        [{"key": obj.key, "version": obj.version, "uploaded_at": obj.last_modified} for obj in files],
        in_process=settings.in_one_process([obj.size for obj in files]),
    )
    return dg.RunRequest(
        run_key=launch.run_key([(obj.key, obj.version) for obj in files]),
        run_config=config,
        tags=launch.run_tags([obj.key for obj in files], Origin.SENSOR),
    )


@dg.sensor(
    job_name=IMPORT_JOB_NAME,
    # Dagster's daemon looks at sensors every 5 s and skips a tick whose interval has not fully
    # elapsed, so an interval of exactly 5 s would tick every 10 s: a second less keeps the pace.
    minimum_interval_seconds=max(1, SensorSettings.from_env().interval_seconds - 1),
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_files_sensor(context: dg.SensorEvaluationContext, bucket: BucketResource) -> dg.SensorResult:
    """Request runs for new or changed ``<workspace>/imports/<name>.csv`` files, packed by size.

    A failed listing raises, so the tick fails visibly and the cursor stays where it was: files
    uploaded during an outage are picked up by the first tick that can list again.
    """
    settings = SensorSettings.from_env()
    uploads = bucket.open()
    objects = list(uploads.list_objects())  # whole listing first: a failure leaves no partial tick
    previous = FileCursor.parse(context.cursor)
    now = time.time()
    since = (
        datetime.fromtimestamp(previous.scanned_at, UTC) - _TRIGGER_SCAN_MARGIN
        if previous.scanned_at
        else datetime.now(UTC) - _FIRST_TRIGGER_SCAN
    )
    launched = launched_by_trigger(context.instance, since)
    cursor = FileCursor(scanned_at=now)
    ready: list[BucketObject] = []
    waiting = 0
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
        if previous.requested.get(obj.key) == obj.version or (obj.key, obj.version) in launched:
            cursor.requested[obj.key] = obj.version
        elif not uploads.shows_partial_uploads() or _is_settled(obj, previous, now, settings.settle_seconds):
            ready.append(obj)
        else:
            cursor.pending[obj.key] = obj.version
            waiting += 1

    ready.sort(key=lambda obj: (obj.last_modified, obj.key))
    chosen, deferred = pack(ready, busy_workspaces(context.instance) if ready else set(), settings)
    for obj in deferred:  # already settled: keep them ready for the next tick
        cursor.pending[obj.key] = obj.version
    for files in chosen:
        for obj in files:
            cursor.requested[obj.key] = obj.version
    if deferred:
        context.log.info(f"{len(deferred)} more new files left for the next ticks (workspaces keep upload order)")
    return dg.SensorResult(
        run_requests=[run_request(files, settings) for files in chosen],
        skip_reason=None if chosen else f"no new files ({waiting} still being written)",
        cursor=cursor.dump(),
    )


def failure_reason(context: dg.RunFailureSensorContext) -> str:
    """The failed steps' own messages (a dg.Failure's description, else the innermost exception)."""
    reasons = [progress.describe_step_failure(event)[0] for event in context.get_step_failure_events()]
    return "; ".join(reasons) or context.failure_event.message or "the run failed"


_monitored = [job for job in (import_job, celery_job()) if job is not None]


@dg.run_failure_sensor(monitored_jobs=_monitored, default_status=dg.DefaultSensorStatus.RUNNING)
def import_failure_sensor(context: dg.RunFailureSensorContext, contacts_db: ContactsDatabase) -> None:
    """Leave every import of a failed run explained: unfinished ones become ``interrupted`` with the
    reason (and whether Dagster retries the run), and the run's status tag says ``failed``.

    The import's own code records the file-level errors it catches; this covers what it cannot:
    a crashed or killed run worker, a database outage after the retries, a bug.
    """
    run = context.instance.get_run_by_id(context.dagster_run.run_id) or context.dagster_run
    current = progress.read_progress(run.tags)
    reason = current.get("error") or failure_reason(context)
    if current.get("status") != RunStatus.FAILED or not current.get("error"):
        progress.report(context.instance, run.run_id, status=RunStatus.FAILED, error=reason)
    retrying = run.tags.get(WILL_RETRY_TAG) == "true"
    note = reason + (" (the run is retried automatically)" if retrying else "")
    if run.tags.get(DRY_RUN_TAG) == "true":  # a dry run recorded no import: nothing to mark
        context.log.error(f"contact import dry run {run.run_id} failed: {note}")
        return
    store = contacts_db.store()
    try:
        interrupted = Ledger(store).interrupt_run(run.root_run_id or run.run_id, note)
    except sa.exc.SQLAlchemyError as exc:  # the database may be what failed the run
        context.log.error(f"contact import run {run.run_id} failed: {note}; its imports could not be marked: {exc}")
        return
    finally:
        store.dispose()
    files = ", ".join(interrupted) if interrupted else "none unfinished"
    context.log.error(f"contact import run {run.run_id} failed: {note}; interrupted imports: {files}")


@dg.sensor(minimum_interval_seconds=OUTPUT_SWEEP_SECONDS, default_status=dg.DefaultSensorStatus.RUNNING)
def step_outputs_sweep(context: dg.SensorEvaluationContext, bucket: BucketResource) -> dg.SkipReason:
    """Delete step outputs of runs that succeeded (or whose re-execution did), and of failed runs
    older than the retention time: they hold the imported files' personal data."""
    store = output_store(context.instance, bucket.open())
    expired = expired_output_runs(context.instance, store.runs(), output_retention_seconds())
    store.delete_runs(expired)
    return dg.SkipReason(f"deleted the step outputs of {len(expired)} runs")
