"""Run the import job from this process: the path that needs no webserver or daemon.

The run is recorded in a Dagster instance (``$DAGSTER_HOME``, else ``.contact_import/dagster_home``)
so that ``dagster dev`` pointed at the same home shows it, and its import is in the ledger.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from contact_import_pipeline.defs import launch
from contact_import_pipeline.defs.resources import bucket_from_env
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.schema import default_database_url
from contact_import_pipeline.defs.io_manager import remove_run_outputs
from contact_import_pipeline.keys import UnsafeKeyError, parse_import_key
from contact_import_pipeline.storage.ledger import Ledger, LedgerEntry
from contact_import_pipeline.importing.options import key_for_source
from contact_import_pipeline.defs.progress import describe_step_failure
from contact_import_pipeline.settings import DEFAULT_SMALL_FILE_BYTES
from contact_import_pipeline.storage.sources import ALLOW_LOCAL_SOURCES_ENV
from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME, ImportStatus, Origin

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
# Dagster's console log of a CLI run: warnings and errors only (set DEBUG to see every event).
CONSOLE_LOG_LEVEL = os.environ.get("CONTACT_IMPORT_LOG_LEVEL", "WARNING")
# Above this size a local file's import runs its steps in child processes (the sensor's threshold
# between a shared one-process run and a run of its own).
IN_PROCESS_MAX_BYTES = DEFAULT_SMALL_FILE_BYTES


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


def run_import(request: ImportRequest, database_url: str | None = None, instance: dg.DagsterInstance | None = None) -> dict[str, Any]:
    """Import one file without a daemon and return its summary (from the ledger).

    Small files run every step in this process, which starts fastest and writes no step output.
    A local file over IN_PROCESS_MAX_BYTES runs the job's own multiprocess executor from here
    instead: each step gets a process of its own (memory stays per step) and batches insert 5 at
    a time; its step outputs are deleted once it succeeded.
    """
    key, source = request.key_and_source()
    instance = instance or local_instance()
    database_url = database_url or default_database_url()
    big = bool(source) and Path(source).is_file() and Path(source).stat().st_size > IN_PROCESS_MAX_BYTES
    run_config = launch.run_config([request.file_entry(key, source)], in_process=not big, batch_size=request.batch_size)
    # The command prints its own summary; Dagster's event stream stays in the run's log.
    run_config["loggers"] = {"console": {"config": {"log_level": CONSOLE_LOG_LEVEL}}}
    run_config.setdefault("resources", {})["contacts_db"] = {"config": {"url": database_url}}
    tags = launch.run_tags([key], Origin.CLI)
    saved = os.environ.get(ALLOW_LOCAL_SOURCES_ENV)
    os.environ[ALLOW_LOCAL_SOURCES_ENV] = "1"
    try:
        if big:
            run_id, success, failure = _run_in_step_processes(run_config, tags, instance)
        else:
            run_id, success, failure = _run_in_this_process(run_config, tags, instance)
    finally:
        if saved is None:
            os.environ.pop(ALLOW_LOCAL_SOURCES_ENV, None)
        else:
            os.environ[ALLOW_LOCAL_SOURCES_ENV] = saved
    if not success:
        entry = _entry_after_failure(database_url, run_id)
        if entry is not None and entry.status == ImportStatus.FAILED:
            raise ImportFailed(entry.error or "the import failed", run_id, user_error=True)
        message, user_error = failure
        raise ImportFailed(message, run_id, user_error)
    entries = Ledger(ContactsStore(database_url)).entries(root_run_id=run_id)
    if big:
        remove_run_outputs(instance, bucket_from_env(), [run_id])
    return summary_of(entries[0])


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


def _run_in_this_process(
    run_config: dict[str, Any], tags: dict[str, str], instance: dg.DagsterInstance
) -> tuple[str, bool, tuple[str, bool]]:
    from contact_import_pipeline.defs.definitions import defs

    result = defs.resolve_job_def(IMPORT_JOB_NAME).execute_in_process(
        run_config=run_config, instance=instance, tags=tags, raise_on_error=False
    )
    return result.run_id, result.success, _failure(result)


def _run_in_step_processes(
    run_config: dict[str, Any], tags: dict[str, str], instance: dg.DagsterInstance
) -> tuple[str, bool, tuple[str, bool]]:
    job = dg.build_reconstructable_job("contact_import_pipeline.defs.definitions", IMPORT_JOB_NAME)
    with dg.execute_job(job, instance=instance, run_config=run_config, tags=tags) as result:
        return result.run_id, result.success, _failure(result)


def summary_of(entry: LedgerEntry) -> dict[str, Any]:
    """An import's summary as the CLI prints it (``--json``), from its ledger entry."""
    return {
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
        "run_id": entry.run_id,
        "import_id": entry.import_id,
    }


def _failure(result: dg.ExecuteInProcessResult | dg.ExecuteJobResult) -> tuple[str, bool]:
    """The first step failure's message, and whether it is the user's (a dg.Failure we raised)."""
    for event in result.all_events:
        if event.is_step_failure:
            return describe_step_failure(event)
    return "the import run failed", False
