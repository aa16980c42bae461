"""Trigger imports and read their progress through the Dagster webserver's GraphQL API.

This replaces the reference design's ``POST /api/import/trigger`` route and realtime hook: the
run belongs to the daemon, so closing the caller never stops it. Every request is a JSON POST
(the webserver also runs mutations sent as GET; this client never does). Each class of failure
has its own exception, with a message that can be shown to a person as it is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from contact_import_pipeline import launch
from contact_import_pipeline.bucket import BucketObject, ContactBucket, MissingObjectError, bucket_from_env
from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.keys import IMPORTS_FOLDER, parse_import_key, validate_workspace_id
from contact_import_pipeline.options import FileImport, check_batch_size, is_url, resolve_options
from contact_import_pipeline.progress import read_progress
from contact_import_pipeline.runner import ImportRequest
from contact_import_pipeline.settings import SensorSettings
from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME, Origin

DAGSTER_URL_ENV = "DAGSTER_URL"
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
LOCATION_NAME = "contact_import_pipeline"  # workspace.yaml location_name
REPOSITORY_NAME = "__repository__"  # what Dagster calls the repository of a Definitions object
REPOSITORY_SELECTOR = {"repositoryLocationName": LOCATION_NAME, "repositoryName": REPOSITORY_NAME}
FINISHED_STATUSES = ("SUCCESS", "FAILURE", "CANCELED")
# Seconds to wait for the webserver: long enough for a busy host, short enough that a wrong URL
# fails a command within seconds.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 30.0

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on RunConfigValidationInvalid { errors { message reason } }
    ... on PipelineNotFoundError { message }
    ... on InvalidSubsetError { message }
    ... on RunConflict { message }
    ... on PresetNotFoundError { message }
    ... on ConflictingExecutionParamsError { message }
    ... on NoModeProvidedError { message }
    ... on UnauthorizedError { message }
    ... on PythonError { message }
  }
}"""

RUN_STATE = """
query RunState($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { runId rootRunId status tags { key value } }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}"""

RUN_MATERIALIZATIONS = """
query RunMaterializations($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      assetMaterializations {
        assetKey { path }
        metadataEntries {
          label
          ... on IntMetadataEntry { intValue }
          ... on TextMetadataEntry { text }
          ... on JsonMetadataEntry { jsonString }
          ... on MarkdownMetadataEntry { mdStr }
          ... on PathMetadataEntry { path }
          ... on TableMetadataEntry { table { records } }
        }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}"""

STEP_FAILURES = """
query StepFailures($runId: ID!) {
  logsForRun(runId: $runId, limit: 10000) {
    __typename
    ... on EventConnection {
      events { __typename ... on ExecutionStepFailureEvent { stepKey error { message } failureMetadata { label description } } }
    }
  }
}"""

WORKSPACE_STATE = """
{
  workspaceOrError {
    __typename
    ... on Workspace { locationEntries { name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } }
  }
}"""


class DagsterApiError(Exception):
    """Base of every error talking to the webserver; the message is meant for a person."""


class DagsterUnreachable(DagsterApiError):
    """The webserver did not answer (down, wrong URL, timeout) or did not answer as GraphQL."""


class DagsterConfigInvalid(DagsterApiError):
    """Dagster refused the run config (``RunConfigValidationInvalid``); ``errors`` lists each problem."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors


class DagsterServerError(DagsterApiError):
    """The webserver answered with an error of its own (``PythonError``, job or location missing...)."""


class RunNotFound(DagsterApiError):
    """No run has this id."""


@dataclass(frozen=True)
class RunState:
    """A run's Dagster status, its tags and the import progress read from them."""

    run_id: str
    status: str
    tags: dict[str, str]
    progress: dict[str, Any] = field(default_factory=dict)
    root_run_id: str = ""

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


@dataclass(frozen=True)
class TriggerResult:
    """What a caller needs after launching: the run, where to watch it, and the keys of its files."""

    run_id: str
    run_url: str
    keys: list[str]


def dagster_url_from_env() -> str:
    return os.environ.get(DAGSTER_URL_ENV, "").strip() or DEFAULT_DAGSTER_URL


class DagsterApi:
    """A small GraphQL client for the contact import code location."""

    def __init__(self, url: str | None = None, session: requests.Session | None = None) -> None:
        self.url = (url or dagster_url_from_env()).rstrip("/")
        self.session = session or requests.Session()

    def run_url(self, run_id: str) -> str:
        return f"{self.url}/runs/{run_id}"

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST one GraphQL document as JSON and return its ``data``."""
        endpoint = f"{self.url}/graphql"
        try:
            response = self.session.post(
                endpoint,
                json={"query": query, "variables": variables or {}},
                timeout=(CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
            )
        except requests.RequestException as exc:
            raise DagsterUnreachable(
                f"cannot reach the Dagster webserver at {self.url} ({type(exc).__name__}); "
                f"is it running? Set --dagster-url or ${DAGSTER_URL_ENV}"
            ) from exc
        try:
            body = response.json()
        except ValueError as exc:
            raise DagsterUnreachable(
                f"{endpoint} answered HTTP {response.status_code} without JSON; is this a Dagster webserver?"
            ) from exc
        if body.get("errors"):
            messages = "; ".join(str(error.get("message", error)) for error in body["errors"])
            raise DagsterServerError(f"the Dagster webserver refused the request: {messages}")
        if response.status_code != 200 or not isinstance(body.get("data"), dict):
            raise DagsterUnreachable(f"{endpoint} answered HTTP {response.status_code} without data")
        return body["data"]

    def check_location(self) -> None:
        """Raise unless the webserver answers and has loaded our code location."""
        workspace = self.execute(WORKSPACE_STATE)["workspaceOrError"]
        if workspace["__typename"] != "Workspace":
            raise DagsterServerError(f"cannot read the Dagster workspace: {workspace.get('message', workspace)}")
        for entry in workspace["locationEntries"]:
            if entry["name"] != LOCATION_NAME:
                continue
            location = entry["locationOrLoadError"] or {}
            if location.get("__typename") == "PythonError":
                raise DagsterServerError(f"code location {LOCATION_NAME} failed to load: {location['message']}")
            if entry["loadStatus"] == "LOADED" and location.get("__typename") == "RepositoryLocation":
                return
            raise DagsterServerError(f"code location {LOCATION_NAME} is {entry['loadStatus'].lower()}; retry shortly")
        raise DagsterServerError(f"the Dagster webserver at {self.url} has no code location {LOCATION_NAME}")

    def launch_import(self, run_config: dict[str, Any], tags: dict[str, str]) -> str:
        """Launch ``import_job`` (it is queued for the daemon) and return the run id."""
        params = {
            "selector": {**REPOSITORY_SELECTOR, "jobName": IMPORT_JOB_NAME},
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": key, "value": value} for key, value in tags.items()]},
        }
        result = self.execute(LAUNCH_RUN, {"executionParams": params})["launchRun"]
        kind = result["__typename"]
        if kind == "LaunchRunSuccess":
            return result["run"]["runId"]
        if kind == "RunConfigValidationInvalid":
            errors = [error["message"] for error in result["errors"]]
            raise DagsterConfigInvalid("Dagster refused the run config: " + "; ".join(errors), errors)
        raise DagsterServerError(f"cannot launch {IMPORT_JOB_NAME} ({kind}): {result.get('message', '')}".rstrip(": "))

    def read_run(self, run_id: str) -> RunState:
        """The run's status, tags and import progress."""
        run = self._run(RUN_STATE, run_id)
        tags = {tag["key"]: tag["value"] for tag in run["tags"]}
        return RunState(
            run_id=run["runId"], status=run["status"], tags=tags, progress=read_progress(tags),
            root_run_id=run.get("rootRunId") or run["runId"],
        )

    def materialization_metadata(self, run_id: str, asset: str = "contacts") -> dict[str, Any]:
        """Metadata of the run's materialization of ``asset`` (int, text and JSON entries)."""
        run = self._run(RUN_MATERIALIZATIONS, run_id)
        for materialization in run["assetMaterializations"]:
            if materialization["assetKey"]["path"] == [asset]:
                return {entry["label"]: _entry_value(entry) for entry in materialization["metadataEntries"]}
        return {}

    def step_failures(self, run_id: str) -> list[str]:
        """``<step>: <message>`` for every failed step, for runs whose own code left no reason."""
        logs = self.execute(STEP_FAILURES, {"runId": run_id})["logsForRun"]
        if logs["__typename"] != "EventConnection":
            raise self._run_error(run_id, logs)
        return [
            f"{event['stepKey']}: {event['error']['message'].strip() if event.get('error') else 'failed'}"
            for event in logs["events"]
            if event["__typename"] == "ExecutionStepFailureEvent"
        ]

    def _run(self, query: str, run_id: str) -> dict[str, Any]:
        run = self.execute(query, {"runId": run_id})["runOrError"]
        if run["__typename"] != "Run":
            raise self._run_error(run_id, run)
        return run

    @staticmethod
    def _run_error(run_id: str, result: dict[str, Any]) -> DagsterApiError:
        if result["__typename"] == "RunNotFoundError":
            return RunNotFound(f"no run with id {run_id!r}")
        return DagsterServerError(f"cannot read run {run_id}: {result.get('message', result['__typename'])}")


def _entry_value(entry: dict[str, Any]) -> Any:
    """A metadata entry's value; a table is its list of records (dicts)."""
    if "table" in entry:
        return [json.loads(record) for record in entry["table"]["records"]]
    for name in ("intValue", "text", "jsonString", "mdStr", "path"):
        if name in entry:
            return entry[name]
    return None


def trigger_import(
    sources: Sequence[str],
    workspace_id: str,
    *,
    tag: str = "",
    board_phone: str = "",
    region: str = "",
    batch_size: int | None = None,
    dagster_url: str | None = None,
    bucket: ContactBucket | None = None,
) -> TriggerResult:
    """Validate the imports locally, then launch one run for all of them over GraphQL.

    Each source is a bucket key ``<workspace>/imports/<name>.csv`` (it must be in the bucket), an
    http(s) URL (read by the run), or a local file (uploaded to ``<workspace>/imports/`` first).
    Raises OptionsError or ImportFileError for bad input and DagsterApiError subclasses for the
    webserver; nothing is uploaded or launched before every input is valid and the webserver answers.
    The run executes in one process unless a file is large or a URL (its size is unknown).
    """
    validate_workspace_id(workspace_id)
    sources = [s.strip() for s in ([sources] if isinstance(sources, str) else sources) if s.strip()]
    if not sources:
        raise OptionsError("a source is required: a local CSV file, an http(s) URL or a bucket key")
    if batch_size is not None:
        check_batch_size(batch_size)
    bucket = bucket or bucket_from_env()
    planned = [_check_source(source, workspace_id, tag, board_phone, region, bucket) for source in sources]
    keys = [entry["key"] for entry, _, _ in planned]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise OptionsError(f"several sources would import as the same key {', '.join(repeated)}: rename one, or trigger them separately")

    api = DagsterApi(dagster_url)
    api.check_location()
    settings = SensorSettings.from_env()
    entries, sizes = [], []
    for entry, local_file, listed in planned:
        if local_file is not None:
            listed = _upload(bucket, local_file, entry["key"])
            entry = dict(entry, key=listed.key, source="")
        if listed is not None:
            entry = dict(entry, version=listed.version, uploaded_at=listed.last_modified)
        entries.append(entry)
        sizes.append(listed.size if listed is not None else None)
    in_process = all(size is not None and size < settings.small_file_bytes for size in sizes)
    run_config = launch.run_config(entries, in_process=in_process, batch_size=batch_size)
    keys = [entry["key"] for entry in entries]
    run_id = api.launch_import(run_config, launch.run_tags(keys, Origin.GRAPHQL))
    return TriggerResult(run_id=run_id, run_url=api.run_url(run_id), keys=keys)


def _check_source(
    source: str, workspace_id: str, tag: str, board_phone: str, region: str, bucket: ContactBucket
) -> tuple[dict[str, Any], Path | None, BucketObject | None]:
    """(run-config entry, local file to upload, the bucket object when already there); raises for bad input."""
    request = ImportRequest(
        source=source, workspace_id=workspace_id, import_tag=tag, board_phone_number=board_phone, default_region=region
    )
    key, run_source = request.key_and_source()
    entry = request.file_entry(key, run_source)
    # The same checks the run makes, so a bad tag, region or board phone fails here, not in a run.
    resolve_options(FileImport(**entry), {}, datetime.now(timezone.utc))
    if is_url(run_source):
        return entry, None, None
    if run_source:
        path = Path(run_source)
        if not path.is_file():
            raise ImportFileError(f"{source}: file not found (give a local CSV file, an http(s) URL or a bucket key)")
        return entry, path, None
    listed = _listed(bucket, key)
    if listed is None:
        raise MissingObjectError(f"{key}: not found in the bucket ({bucket.locator(key)})")
    return entry, None, listed


def _listed(bucket: ContactBucket, key: str) -> BucketObject | None:
    for obj in bucket.list_objects(key):
        if obj.key == key:
            return obj
    return None


def _upload(bucket: ContactBucket, path: Path, key: str) -> BucketObject:
    """Put the file at ``key``, or beside it with a time suffix when ``key`` holds other content.

    Returns the stored object; its version goes into the run config, which tells the new-file
    sensor that the upload was already launched.
    """
    data = path.read_bytes()
    if bucket.exists(key) and not _same_content(bucket, key, data):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        import_key = parse_import_key(key)
        key = f"{import_key.workspace_id}/{IMPORTS_FOLDER}/{import_key.name[:-4]}-{stamp}.csv"
    if not bucket.exists(key):
        bucket.write_bytes(key, data)
    listed = _listed(bucket, key)
    if listed is None:
        raise ImportFileError(f"{key}: uploaded, but the bucket does not list it")
    return listed


def _same_content(bucket: ContactBucket, key: str, data: bytes) -> bool:
    try:
        stored = bucket.read_bytes(key, len(data))
    except ImportFileError:  # larger than our file, or gone meanwhile
        return False
    return stored == data

