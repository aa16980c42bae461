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
from contact_import_pipeline.contacts_store import DATABASE_URL_ENV
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
    """Import one file in this process and return the summary (the ``contacts`` asset's value)."""
    from contact_import_pipeline.definitions import defs

    partition_key, source = request.partition_and_source()
    instance = instance or local_instance()
    instance.add_dynamic_partitions(contact_files.name, [partition_key])
    overrides = {ALLOW_LOCAL_SOURCES_ENV: "1"}
    if database_url:
        overrides[DATABASE_URL_ENV] = database_url
    saved = {name: os.environ.get(name) for name in overrides}
    os.environ.update(overrides)
    try:
        result = defs.resolve_job_def("import_job").execute_in_process(
            partition_key=partition_key,
            run_config=request.run_config(source),
            instance=instance,
            tags={
                "contact_import/origin": "cli",
                "contact_import/file": partition_key,
                # set at launch so history lists even a run that fails before reading its options
                "contact_import/workspace": request.workspace_id,
            },
            raise_on_error=False,
        )
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    if not result.success:
        message, user_error = _failure(result)
        raise ImportFailed(message, result.run_id, user_error)
    summary = dict(result.output_for_node("contacts"))
    summary["run_id"] = result.run_id
    return summary


def _failure(result: dg.ExecuteInProcessResult) -> tuple[str, bool]:
    """The first step failure's message, and whether it is the user's (a dg.Failure we raised)."""
    for event in result.all_events:
        if event.is_step_failure:
            return describe_step_failure(event)
    return "the import run failed", False
