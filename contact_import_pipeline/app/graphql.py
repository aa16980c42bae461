"""A small client of the Dagster webserver's GraphQL API: launch an import run, read its progress.

This replaces the reference design's ``POST /api/import/trigger`` route and realtime hook: the
run belongs to the daemon, so closing the caller never stops it. Every request is a JSON POST
(the webserver also runs mutations sent as GET; this client never does). Each class of failure
has its own exception, with a message that can be shown to a person as it is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import requests

from contact_import_pipeline.defs.progress import read_progress
from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME

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
            run_id=run["runId"],
            status=run["status"],
            tags=tags,
            progress=read_progress(tags),
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
