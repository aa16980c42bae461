"""Run the import job in this process: the fallback path that needs no webserver or daemon.

The run is recorded in a Dagster instance (``$DAGSTER_HOME``, else ``.contact_import/dagster_home``)
so that ``dagster dev`` pointed at the same home shows it, and import history includes it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

from contact_import_pipeline.keys import IMPORTS_FOLDER, UnsafeKeyError, parse_import_key
from contact_import_pipeline.partitions import contact_files
from contact_import_pipeline.progress import describe_step_failure
from contact_import_pipeline.jobs import IMPORT_JOB_NAME
from contact_import_pipeline.sources import ALLOW_LOCAL_SOURCES_ENV

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
# Above this size a local file's import runs its steps in child processes (see run_import).
IN_PROCESS_MAX_BYTES = 20 * 1024 * 1024
UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._ ()+-]+")


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

    def partition_and_source(self) -> tuple[str, str]:
        """The partition key (a bucket key) and the ``source`` option for this request.

        A bucket key is imported from the bucket; a URL or a local path is read directly and gets
        the key ``<workspace>/imports/<file name>`` so history and rejects have a home.
        """
        try:
            parse_import_key(self.source)
            return self.source, ""
        except UnsafeKeyError:
            pass
        if self.source.startswith(("http://", "https://")):
            name = Path(urlsplit(self.source).path).name
            return self._key_for(name), self.source
        path = Path(self.source).expanduser().resolve()
        return self._key_for(path.name), str(path)

    def _key_for(self, name: str) -> str:
        safe = UNSAFE_NAME_CHARS.sub("_", name).strip(" .") or "upload"
        if not safe.lower().endswith(".csv"):
            safe += ".csv"
        return f"{self.workspace_id}/{IMPORTS_FOLDER}/{safe}"

    def run_config(self, source: str) -> dict[str, Any]:
        config: dict[str, Any] = {"workspace_id": self.workspace_id, "source": source}
        for name in ("import_tag", "board_phone_number", "default_region", "on_duplicate"):
            if getattr(self, name):
                config[name] = getattr(self, name)
        if self.batch_size is not None:
            config["batch_size"] = self.batch_size
        if self.column_mapping:
            config["column_mapping"] = self.column_mapping
        return {"ops": {"raw_csv": {"config": config}}}


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
    """Import one file without a daemon and return the summary (the ``contacts`` asset's value).

    Small files run every step in this process, which starts fastest. A local file over
    IN_PROCESS_MAX_BYTES runs the job's own multiprocess executor from here instead: each step
    gets a process of its own (memory stays per step) and batches insert 5 at a time.
    """
    partition_key, source = request.partition_and_source()
    instance = instance or local_instance()
    instance.add_dynamic_partitions(contact_files.name, [partition_key])
    run_config = request.run_config(source)
    # The command prints its own summary; Dagster's event stream stays in the run's log.
    run_config["loggers"] = {"console": {"config": {"log_level": CONSOLE_LOG_LEVEL}}}
    if database_url:
        run_config["resources"] = {"contacts_db": {"config": {"url": database_url}}}
    tags = {
        "contact_import/origin": "cli",
        "contact_import/file": partition_key,
        # set at launch so history lists even a run that fails before reading its options
        "contact_import/workspace": request.workspace_id,
    }
    saved = os.environ.get(ALLOW_LOCAL_SOURCES_ENV)
    os.environ[ALLOW_LOCAL_SOURCES_ENV] = "1"
    try:
        if source and Path(source).is_file() and Path(source).stat().st_size > IN_PROCESS_MAX_BYTES:
            return _run_in_step_processes(partition_key, run_config, tags, instance)
        return _run_in_this_process(partition_key, run_config, tags, instance)
    finally:
        if saved is None:
            os.environ.pop(ALLOW_LOCAL_SOURCES_ENV, None)
        else:
            os.environ[ALLOW_LOCAL_SOURCES_ENV] = saved


def _run_in_this_process(
    partition_key: str, run_config: dict[str, Any], tags: dict[str, str], instance: dg.DagsterInstance
) -> dict[str, Any]:
    from contact_import_pipeline.definitions import defs

    result = defs.resolve_job_def(IMPORT_JOB_NAME).execute_in_process(
        partition_key=partition_key, run_config=run_config, instance=instance, tags=tags, raise_on_error=False
    )
    return _summary(result)


def _run_in_step_processes(
    partition_key: str, run_config: dict[str, Any], tags: dict[str, str], instance: dg.DagsterInstance
) -> dict[str, Any]:
    job = dg.build_reconstructable_job("contact_import_pipeline.definitions", IMPORT_JOB_NAME)
    with dg.execute_job(
        job, instance=instance, run_config=run_config, tags={**tags, "dagster/partition": partition_key}
    ) as result:
        return _summary(result)


def _summary(result: dg.ExecuteInProcessResult | dg.ExecuteJobResult) -> dict[str, Any]:
    if not result.success:
        message, user_error = _failure(result)
        raise ImportFailed(message, result.run_id, user_error)
    # Read from the materialization, not the step output: a multiprocess run's asset output lives
    # under the asset's path, and the metadata is what the UI and GraphQL show anyway.
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("contacts")]
    metadata = event.step_materialization_data.materialization.metadata
    summary = {key: value.value for key, value in metadata.items() if not key.startswith("dagster/")}
    summary.setdefault("rejects_file", None)
    summary["run_id"] = result.run_id
    return summary


def _failure(result: dg.ExecuteInProcessResult | dg.ExecuteJobResult) -> tuple[str, bool]:
    """The first step failure's message, and whether it is the user's (a dg.Failure we raised)."""
    for event in result.all_events:
        if event.is_step_failure:
            return describe_step_failure(event)
    return "the import run failed", False
