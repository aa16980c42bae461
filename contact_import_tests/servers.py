"""A real ``dagster-webserver`` and ``dagster-daemon`` for end-to-end tests (a helper, not a fixture),
a daemon without code locations for run monitoring alone, and ``FakeDagster``, a canned GraphQL
endpoint for fast client tests.

The webserver and daemon run against the repo's workspace.yaml, whose ``working_directory: .`` is
the repo root, so the caller must pass CONTACTS_DATABASE_URL and CONTACT_BUCKET_DIR explicitly: the
local defaults (``.contact_import/...``) would otherwise land in the repo. Each process gets its own
process group, which is stopped as a whole (the webserver and daemon start code servers and run workers).
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from contact_import_pipeline.storage.outputs import LOCAL_OUTPUTS_FOLDER
from contact_import_tests.helpers import REPO_ROOT, free_port, process_group, start_group, stop_groups

WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"
BIN = Path(sys.executable).parent
REQUIRED_ENV = ("CONTACTS_DATABASE_URL", "CONTACT_BUCKET_DIR")
# A cold start (webserver, daemon, two code servers importing dagster + pandas) takes ~20 s on a
# shared 2-core machine; 180 s leaves room for a loaded CI box.
START_TIMEOUT_SECONDS = 180.0
LOCATION_NAME = "contact_import_pipeline"


def production_home(parent: Path) -> Path:
    """A new DAGSTER_HOME under ``parent`` holding the repository's production dagster.yaml."""
    home = parent / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


def run_outputs_folder(home: Path, run_id: str) -> Path:
    """Where a run's step outputs live on disk under a DAGSTER_HOME whose dagster.yaml keeps the
    default storage folder (``<home>/storage``) and whose bucket is a local folder."""
    return home / "storage" / LOCAL_OUTPUTS_FOLDER / run_id


_LOCATION_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries {
  name loadStatus locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
_DAEMON_QUERY = """{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"""


@dataclass
class DagsterServers:
    """Running servers: ``url`` is the webserver, ``env`` what both processes were given."""

    url: str
    home: Path
    env: dict[str, str]
    logs: dict[str, Path]
    processes: dict[str, subprocess.Popen]

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def log_tail(self, chars: int = 3000) -> str:
        return "\n".join(
            f"--- {name} ---\n{path.read_text(errors='replace')[-chars:]}" for name, path in self.logs.items()
        )

    def stop(self) -> None:
        stop_groups(list(self.processes.values()))


@contextmanager
def dagster_servers(home: Path, env: Mapping[str, str], log_dir: Path) -> Iterator[DagsterServers]:
    """Start webserver + daemon with DAGSTER_HOME=``home`` (holding a dagster.yaml) and ``env``.

    Yields once ``/server_info`` answers, the code location is loaded and the run queue daemon is
    healthy; stops both process groups on exit, also when the start fails.
    """
    missing = [name for name in REQUIRED_ENV if not env.get(name)]
    if missing:
        raise ValueError(f"pass {missing} explicitly: the servers run in the repo root")
    port = free_port()
    full_env = {**os.environ, **env, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    commands = {
        "webserver": [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", str(WORKSPACE_YAML)],
        "daemon": [str(BIN / "dagster-daemon"), "run", "-w", str(WORKSPACE_YAML)],
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    servers = DagsterServers(url=f"http://127.0.0.1:{port}", home=home, env=full_env, logs={}, processes={})
    try:
        # One after the other: both would create a fresh instance's storage, and two processes
        # running its migrations at once fail ("table alembic_version already exists").
        for name, command in commands.items():
            servers.logs[name] = log_dir / f"{name}.log"
            servers.processes[name] = start_group(command, env=full_env, log=servers.logs[name], cwd=REPO_ROOT)
            _wait_ready(servers)
        yield servers
    finally:
        servers.stop()


@contextmanager
def monitoring_daemon(home: Path, log: Path) -> Iterator[subprocess.Popen]:
    """``dagster-daemon run`` on DAGSTER_HOME=``home`` with no code location: it loads nothing, so
    of its daemons only run monitoring has work, failing crashed runs and freeing their pool slots
    as ``home``'s dagster.yaml says (a daemon of the repo's workspace would also run its sensors)."""
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    with process_group([str(BIN / "dagster-daemon"), "run", "--empty-workspace"], env=env, log=log, cwd=home) as daemon:
        yield daemon


def _wait_ready(servers: DagsterServers) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    waiting_for = "the webserver"
    while time.monotonic() < deadline:
        for name, process in servers.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"dagster {name} exited with {process.returncode}\n{servers.log_tail()}")
        try:
            requests.get(f"{servers.url}/server_info", timeout=5).raise_for_status()
            waiting_for = f"code location {LOCATION_NAME}"
            if _location_loaded(servers):
                if "daemon" not in servers.processes:
                    return
                waiting_for = "the daemon's run queue"
                if _queue_daemon_healthy(servers):
                    return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {START_TIMEOUT_SECONDS:.0f}s waiting for {waiting_for}\n{servers.log_tail()}")


def _location_loaded(servers: DagsterServers) -> bool:
    workspace = servers.graphql(_LOCATION_QUERY)["workspaceOrError"]
    for entry in workspace.get("locationEntries", []):
        if entry["name"] != LOCATION_NAME:
            continue
        location = entry["locationOrLoadError"] or {}
        if location.get("__typename") == "PythonError":
            raise RuntimeError(f"code location failed to load: {location['message']}")
        return entry["loadStatus"] == "LOADED" and location.get("__typename") == "RepositoryLocation"
    return False


def _queue_daemon_healthy(servers: DagsterServers) -> bool:
    statuses = servers.graphql(_DAEMON_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return any(s["daemonType"] == "QUEUED_RUN_COORDINATOR" and s["healthy"] for s in statuses)


class FakeDagster:
    """A stand-in webserver for client tests: answers GraphQL POSTs from canned results by field.

    ``results[field]`` is the value of that top-level field (``launchRun``, ``runOrError``...) or a
    list of values served in turn (the last one repeats). Every request is recorded; anything but
    ``POST /graphql`` with a JSON body is answered 405 and recorded too, so tests can prove the
    client never uses GET.
    """

    def __init__(self, results: dict[str, object]) -> None:
        self.results = results
        self.requests: list[dict] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.requests.append(
                    {"method": "POST", "path": self.path, "type": self.headers.get("Content-Type"), "body": body}
                )
                if self.path != "/graphql" or self.headers.get("Content-Type") != "application/json":
                    self._send(405, {})
                    return
                self._send(200, {"data": fake._answer(json.loads(body)["query"])})

            def do_GET(self) -> None:
                fake.requests.append({"method": "GET", "path": self.path})
                self._send(405, {})

            def _send(self, code: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for the server loop to look again: every 0.05 s, not the default 0.5 s a test.
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def _answer(self, query: str) -> dict:
        for name, value in self.results.items():
            if f"{name}(" in query or f"{name} " in query:
                if isinstance(value, list):
                    value = value.pop(0) if len(value) > 1 else value[0]
                return {name: value}
        raise AssertionError(f"FakeDagster has no answer for {query[:80]!r}")

    def queries(self) -> list[str]:
        """The top-level field of each GraphQL request, in order."""
        names = []
        for request in self.requests:
            query = json.loads(request["body"])["query"] if request["method"] == "POST" else "GET"
            names.append(next((name for name in self.results if name in query), query[:40]))
        return names

    def variables(self, field: str) -> list[dict]:
        return [
            json.loads(r["body"])["variables"]
            for r in self.requests
            if r["method"] == "POST" and field in json.loads(r["body"])["query"]
        ]

    @classmethod
    def launching(cls, run_id: str, **results: object) -> FakeDagster:
        """A webserver whose code location is loaded and which accepts every launch as ``run_id``."""
        launched = {"__typename": "LaunchRunSuccess", "run": {"runId": run_id, "status": "QUEUED"}}
        return cls({"workspaceOrError": LOADED_WORKSPACE, "launchRun": launched, **results})

    def launches(self) -> list[tuple[dict, dict[str, str]]]:
        """The run config and the tags of each ``launchRun`` request, in order."""
        params = [v["executionParams"] for v in self.variables("launchRun")]
        return [(p["runConfigData"], {t["key"]: t["value"] for t in p["executionMetadata"]["tags"]}) for p in params]

    def launched_keys(self) -> list[list[str]]:
        """The file keys of each launched run, in run-config order."""
        return [[f["key"] for f in config["ops"]["raw_csv"]["config"]["files"]] for config, _ in self.launches()]

    def __enter__(self) -> FakeDagster:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


LOADED_WORKSPACE = {
    "__typename": "Workspace",
    "locationEntries": [
        {"name": LOCATION_NAME, "loadStatus": "LOADED", "locationOrLoadError": {"__typename": "RepositoryLocation"}}
    ],
}
