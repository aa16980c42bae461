"""Run the import job from this process: the path that needs no webserver or daemon.

The run is recorded in a Dagster instance (``$DAGSTER_HOME``, else ``.contact_import/dagster_home``)
so that ``dagster dev`` pointed at the same home shows it, and its import is in the ledger.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from contact_import_pipeline.defs import assets, launch
from contact_import_pipeline.defs.io_manager import remove_run_outputs
from contact_import_pipeline.defs.progress import describe_step_failure, read_progress
from contact_import_pipeline.defs.resources import bucket_from_env
from contact_import_pipeline.importing.options import key_for_source
from contact_import_pipeline.keys import UnsafeKeyError, parse_import_key
from contact_import_pipeline.settings import SensorSettings
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger, LedgerEntry
from contact_import_pipeline.storage.schema import default_database_url
from contact_import_pipeline.storage.sources import ALLOW_LOCAL_SOURCES_ENV
from contact_import_pipeline.vocabulary import CLI_CALL_TAG, IMPORT_JOB_NAME, ImportStatus, Origin

LOCAL_HOME = Path(".contact_import") / "dagster_home"
# The local instance of the demo and the CLI: SQLite storage in the home folder, the same
# concurrency settings as production, and run monitoring so crashed runs are marked failed.
LOCAL_DAGSTER_YAML = """\
concurrency:
  pools:
    default_limit: 5
run_monitoring:
  enabled: true
  max_runtime_seconds: 7200
  free_slots_after_run_end_seconds: 60
telemetry:
  enabled: false
"""
# Dagster's console log of a run started here. The caller prints the outcome (one line for a file
# that cannot be imported); the events, a failed step's stack trace included, stay in the run's
# event log unless the caller asks for them (``contact-import import --verbose``).
QUIET_LOG_LEVEL, VERBOSE_LOG_LEVEL = "CRITICAL", "DEBUG"
# How often a watcher of the run looks at it: twice a second looks live, and each look is two small
# reads of the instance's storage.
WATCH_SECONDS = 0.5
STDERR_FD = 2


class ImportFailed(Exception):
    """The run failed; ``user_error`` is True for file-level and option errors (exit code 2)."""

    def __init__(self, message: str, run_id: str | None, user_error: bool) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.user_error = user_error


@dataclass(frozen=True)
class ImportRequest:
    """What to import, as the CLI or a caller gives it."""

    source: str
    workspace_id: str
    import_tag: str = ""
    board_phone_number: str = ""
    default_region: str = ""
    batch_size: int | None = None
    on_duplicate: str = ""
    column_mapping: dict[str, str] | None = None

    def key_and_source(self) -> tuple[str, str]:
        """The import's bucket key and its ``source`` option.

        A bucket key is imported from the bucket; a URL or a local path is read directly and gets
        the key ``<workspace>/imports/<file name>`` so history and rejects have a home.
        """
        try:
            parse_import_key(self.source)
            return self.source, ""
        except UnsafeKeyError:
            pass
        if self.source.startswith(("http://", "https://")):
            return key_for_source(self.workspace_id, self.source), self.source
        path = Path(self.source).expanduser().resolve()
        return key_for_source(self.workspace_id, str(path)), str(path)

    def file_entry(self, key: str, source: str) -> dict[str, Any]:
        """This file's entry in the run config's ``files`` list."""
        entry: dict[str, Any] = {"key": key, "source": source, "workspace_id": self.workspace_id}
        for name in ("import_tag", "board_phone_number", "default_region", "on_duplicate"):
            entry[name] = getattr(self, name)
        entry["column_mapping"] = self.column_mapping or {}
        return entry


class Stage(StrEnum):
    """What a run of imports is doing, in the words shown to a person watching it."""

    READING = "reading"
    NORMALIZING = "normalizing"
    DEDUPLICATING = "deduplicating"
    INSERTING = "inserting"
    SUMMARIZING = "summarizing"


# The stage each op of the import job starts; a step key is ``[<graph>.]<op>[[<mapping key>]]``.
STAGE_OF_OP = {
    assets.raw_csv.op.name: Stage.READING,
    assets.normalized_contacts.op.name: Stage.NORMALIZING,
    assets.deduped_contacts.op.name: Stage.DEDUPLICATING,
    assets.plan_batches.name: Stage.INSERTING,
    assets.insert_batch.name: Stage.INSERTING,
    assets.summarize.name: Stage.SUMMARIZING,
}


@dataclass(frozen=True)
class RunProgress:
    """One look at a running import: the stage it entered, and the run's progress fields
    (``defs.progress.read_progress``; empty for a stage the run had already left when looked at)."""

    stage: Stage
    progress: dict[str, Any]


ProgressListener = Callable[[RunProgress], None]


class RunWatcher:
    """Tells a listener, from a thread of its own, each change of a run's stage and progress.

    It reads what every executor writes to the instance (step starts, progress tags), so it works
    alike whether the steps run in this process or each in a process of its own. Every stage the
    run entered is told, in order, even one that began and ended between two looks; the last look
    is taken after the run ended, so the listener sees the final counts.
    """

    def __init__(self, instance: dg.DagsterInstance, run: dg.RunsFilter, listener: ProgressListener) -> None:
        self._instance = instance
        self._run = run
        self._listener = listener
        self._cursor: str | None = None
        self._told: RunProgress | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="contact-import-progress", daemon=True)

    def __enter__(self) -> None:
        self._thread.start()

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            self._look()
        self._look()

    def _look(self) -> None:
        try:
            runs = self._instance.get_runs(filters=self._run, limit=1)
            if not runs:  # not created yet
                return
            starts = self._instance.get_records_for_run(
                runs[0].run_id, cursor=self._cursor, of_type=dg.DagsterEventType.STEP_START
            )
        except sa.exc.OperationalError:  # a busy SQLite storage: look again next time
            return
        self._cursor = starts.cursor
        told = self._told.stage if self._told else None
        entered: list[Stage] = []  # the stages the run entered since the last look, in order
        for record in starts.records:
            stage = STAGE_OF_OP.get(_op_name(record.event_log_entry.step_key or ""))
            if stage is not None and stage != (entered[-1] if entered else told):
                entered.append(stage)
        for left in entered[:-1]:
            self._tell(RunProgress(left, {}))
        current = entered[-1] if entered else told
        if current is not None:
            self._tell(RunProgress(current, read_progress(runs[0].tags)))

    def _tell(self, seen: RunProgress) -> None:
        if seen != self._told:
            self._told = seen
            self._listener(seen)


def _op_name(step_key: str) -> str:
    return step_key.split("[", 1)[0].rsplit(".", 1)[-1]


def _watching(
    instance: dg.DagsterInstance, run: dg.RunsFilter, listener: ProgressListener | None
) -> AbstractContextManager[None]:
    return RunWatcher(instance, run, listener) if listener is not None else nullcontext()


def local_instance() -> dg.DagsterInstance:
    """``$DAGSTER_HOME``'s instance, or the project-local one (created on first use)."""
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    home = LOCAL_HOME.resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(LOCAL_DAGSTER_YAML)
    return dg.DagsterInstance.from_config(str(home))


def run_import(
    request: ImportRequest,
    database_url: str | None = None,
    instance: dg.DagsterInstance | None = None,
    *,
    verbose: bool = False,
    on_progress: ProgressListener | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Import one file without a daemon and return its summary (from the ledger).

    ``dry_run`` predicts the summary instead, writing nothing (in this process whatever the
    file's size: it keeps nothing on disk), and adds the sample contacts and ``"dry_run": true``.

    A file runs every step in this process, which starts fastest and writes no step output. A local
    file of at least ``CONTACT_STEP_PROCESSES_BYTES`` (as the sensor decides, ``SensorSettings``)
    runs the job's own multiprocess executor from here instead: each step gets a process of its
    own (memory stays per step) and batches insert 5 at a time; its step outputs are deleted once
    it succeeded.
    ``verbose`` prints Dagster's events to stderr; ``on_progress`` is told each change of the run's
    stage and progress while it runs (from another thread).
    """
    key, source = request.key_and_source()
    instance = instance or local_instance()
    database_url = database_url or default_database_url()
    big = (
        not dry_run
        and bool(source)
        and Path(source).is_file()
        and not SensorSettings.from_env().in_one_process([Path(source).stat().st_size])
    )
    run_config = launch.run_config(
        [request.file_entry(key, source)], in_process=not big, batch_size=request.batch_size, dry_run=dry_run
    )
    run_config["loggers"] = {"console": {"config": {"log_level": VERBOSE_LOG_LEVEL if verbose else QUIET_LOG_LEVEL}}}
    run_config.setdefault("resources", {})["contacts_db"] = {"config": {"url": database_url}}
    tags = launch.run_tags([key], Origin.CLI, dry_run=dry_run)
    saved = os.environ.get(ALLOW_LOCAL_SOURCES_ENV)
    os.environ[ALLOW_LOCAL_SOURCES_ENV] = "1"
    try:
        run = _run_in_step_processes if big else _run_in_this_process
        with _stderr_discarded() if big and not verbose else nullcontext():
            run_id, success, failure, value = run(run_config, tags, instance, on_progress)
    finally:
        if saved is None:
            os.environ.pop(ALLOW_LOCAL_SOURCES_ENV, None)
        else:
            os.environ[ALLOW_LOCAL_SOURCES_ENV] = saved
    if not success:
        entry = None if dry_run else _entry_after_failure(database_url, run_id)
        if entry is not None and entry.status == ImportStatus.FAILED:
            raise ImportFailed(entry.error or "the import failed", run_id, user_error=True)
        message, user_error = failure
        raise ImportFailed(message, run_id, user_error)
    if dry_run:
        assert value is not None  # an in-process run that succeeded has the contacts asset's value
        return preview_of(value["previews"][0], run_id)
    entries = Ledger(ContactsStore(database_url)).entries(root_run_id=run_id)
    if big:
        remove_run_outputs(instance, bucket_from_env(), [run_id])
    return summary_of(entries[0])


@contextmanager
def _stderr_discarded() -> Iterator[None]:
    """Point this process's stderr, which step processes inherit, at the null device meanwhile.

    A step process announces its start there with a console logger of Dagster's own, at DEBUG,
    whatever the run's console level; those events, and any failure, are in the run's event log.
    """
    sys.stderr.flush()
    saved = os.dup(STDERR_FD)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), STDERR_FD)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, STDERR_FD)
        os.close(saved)


def _entry_after_failure(database_url: str, run_id: str) -> LedgerEntry | None:
    """The failed run's import, if the ledger can be read (the database may be what failed)."""
    store = ContactsStore(database_url)
    try:
        entries = Ledger(store).entries(root_run_id=run_id)
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        store.dispose()
    return entries[0] if entries else None


# (run id, success, (failure message, whether the user's), the contacts asset's value when kept in memory)
RunOutcome = tuple[str, bool, tuple[str, bool], dict[str, Any] | None]


def _run_in_this_process(
    run_config: dict[str, Any], tags: dict[str, str], instance: dg.DagsterInstance, on_progress: ProgressListener | None
) -> RunOutcome:
    from contact_import_pipeline.defs.definitions import defs

    run_id = str(uuid.uuid4())  # as Dagster makes them
    with _watching(instance, dg.RunsFilter(run_ids=[run_id]), on_progress):
        result = defs.resolve_job_def(IMPORT_JOB_NAME).execute_in_process(
            run_config=run_config, instance=instance, tags=tags, run_id=run_id, raise_on_error=False
        )
    value = result.output_for_node("contacts") if result.success else None
    return result.run_id, result.success, _failure(result), value


def _run_in_step_processes(
    run_config: dict[str, Any], tags: dict[str, str], instance: dg.DagsterInstance, on_progress: ProgressListener | None
) -> RunOutcome:
    job = dg.build_reconstructable_job("contact_import_pipeline.defs.definitions", IMPORT_JOB_NAME)
    call = {CLI_CALL_TAG: str(uuid.uuid4())}
    with (
        _watching(instance, dg.RunsFilter(tags=call), on_progress),
        dg.execute_job(job, instance=instance, run_config=run_config, tags=tags | call) as result,
    ):
        return result.run_id, result.success, _failure(result), None


def preview_of(line: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A dry run's prediction for one import, in the shape ``summary_of`` gives an import, plus its samples."""
    return {
        "dry_run": True,
        **{key: line.get(key) for key in SUMMARY_FIELDS},
        "rejects_file": None,
        "cleanup": None,
        "sample_contacts": line.get("sample_contacts", []),
        "run_id": run_id,
        "import_id": line["import_id"],
    }


# What a summary and a dry run's prediction share, in the order ``--json`` prints them.
SUMMARY_FIELDS = (
    "status",
    "workspace_id",
    "import_tag",
    "file",
    "total",
    "processed",
    "imported",
    "updated",
    "skipped",
    "failed",
    "batches",
    "skipped_by_reason",
    "failed_by_reason",
    "errors",
    "encoding",
    "delimiter",
    "timings",
    "mapping",
    "diagnoses",
    "multi_phone_rows",
)


def summary_of(entry: LedgerEntry) -> dict[str, Any]:
    """An import's summary as the CLI prints it (``--json``), from its ledger entry."""
    return {
        "dry_run": False,
        "status": entry.status,
        "workspace_id": entry.workspace_id,
        "import_tag": entry.import_tag,
        "file": entry.file,
        "total": entry.total,
        "processed": entry.processed,
        "imported": entry.imported,
        "updated": entry.updated,
        "skipped": entry.skipped,
        "failed": entry.failed,
        "batches": entry.details.get("batches", entry.planned_batches),
        "skipped_by_reason": entry.skipped_by_reason,
        "failed_by_reason": entry.failed_by_reason,
        "errors": entry.errors,
        "rejects_file": entry.rejects_file,
        "cleanup": entry.cleanup,
        "encoding": entry.details.get("encoding"),
        "delimiter": entry.details.get("delimiter"),
        "timings": entry.details.get("timings", {}),
        "mapping": entry.details.get("mapping", {}),
        "diagnoses": entry.details.get("diagnoses", []),
        "multi_phone_rows": entry.details.get("multi_phone_rows", 0),
        "run_id": entry.run_id,
        "import_id": entry.import_id,
    }


def _failure(result: dg.ExecuteInProcessResult | dg.ExecuteJobResult) -> tuple[str, bool]:
    """The first step failure's message, and whether it is the user's (a dg.Failure we raised)."""
    for event in result.all_events:
        if event.is_step_failure:
            return describe_step_failure(event)
    return "the import run failed", False
