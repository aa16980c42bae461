"""The ``many_files`` line: many small uploads at once through the real sensor and daemon, against
the reference design's script per file on the same files.

Set-up: N files of R rows (one generated file split into N, same header) over W workspaces (file
i goes to workspace i mod W, in upload order); a fresh DAGSTER_HOME with a copy of the repository's
dagster.yaml (PostgreSQL storage in a fresh database); a fresh contacts database; a temporary
bucket folder; ``dagster-daemon run -w workspace.yaml`` from the repository root, sensor interval S.

What is measured (everything in one run, printed as one JSON line):

* burst: the N files renamed into ``<bucket>/<ws>/imports/`` at once; a file is done when
  ``processed/<name>`` exists. Files/min = N / (last done - first landing) * 60, upload-to-done
  latencies, the runs Dagster created, and the ledger (every file ``completed`` exactly once);
* reference: ``python -m bench.baselines reference-file`` as a fresh process per file, one after
  another in upload order, into its own database; files/min over the whole loop;
* correctness: per workspace, the phones and each phone's first name, last name and email are the
  same in both databases;
* single: one R-row file renamed into the idle daemon's bucket, landing to archived (local folder,
  and S3 on a moto server when moto is installed);
* trigger: ``trigger.trigger_import`` of one R-row local file through a dagster-webserver,
  launch to finished run;
* tick: one evaluation of ``new_files_sensor`` over 10,000 settled files (the second one, which
  requests the runs), and the daemon's own ticks over the same files.

    python -m bench.many_files --files 40 --rows 300 --workspaces 8 --interval 5
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.common import (
    REPO_DIR,
    SEED,
    conninfo,
    create_database,
    create_schema,
    drop_database,
    sqlalchemy_url,
)
from contact_import_tests.helpers import dagster_pg_env, free_port, process_group

DEFAULT_FILES = 1000
DEFAULT_ROWS = 300
DEFAULT_WORKSPACES = 50
DEFAULT_INTERVAL_SECONDS = 5
# The targets: a burst of this shape at this rate, and upper bounds for one file alone.
TARGET_SHAPE = (1000, 300)
TARGET_FILES_PER_MIN = 1000.0
TARGET_TRIGGER_SECONDS = 6.0
TARGET_TICK_SECONDS = 10.0
TICK_FILES = 10_000
# Each single-file figure depends on where in the sensor's interval the file lands; a few
# measurements show the spread, and the target is judged on the slowest.
SINGLE_REPEATS = 3
PARTS = ("single", "trigger", "s3", "tick")
POLL_SECONDS = 0.2
# Generous: on a shared 2-core machine a cold daemon and its code server can take long to start.
START_TIMEOUT_SECONDS = 180.0
SINGLE_TIMEOUT_SECONDS = 300.0
RUNS_FINISH_TIMEOUT_SECONDS = 300.0
SENSOR_NAME = "new_files_sensor"
S3_BUCKET_NAME = "bench-many-files"
S3_REGION = "us-east-1"
# moto accepts any credentials; fixed ones keep boto3 from looking for real ones.
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
BIN = Path(sys.executable).parent


def log(message: str) -> None:
    print(f"[many_files {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Upload:
    """One file to upload: its workspace, its name and where it waits before landing."""

    workspace: str
    name: str
    staged: Path

    @property
    def key(self) -> str:
        return f"{self.workspace}/imports/{self.name}"


@dataclass
class World:
    """The throw-away things one run of the line lives in."""

    home: Path
    bucket: Path
    logs: Path
    instance_db: str
    contacts_db: str
    interval: int

    @property
    def contacts_url(self) -> str:
        return sqlalchemy_url(self.contacts_db)

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of the daemon and webserver: only what this world sets of CONTACT*/DAGSTER*."""
        from contact_import_pipeline.settings import SENSOR_INTERVAL_ENV
        from contact_import_pipeline.storage.bucket import BUCKET_DIR_ENV
        from contact_import_pipeline.storage.schema import DATABASE_URL_ENV

        clean = {k: v for k, v in os.environ.items() if not k.startswith(("CONTACT", "DAGSTER"))}
        return {
            **clean,
            **dagster_pg_env(sqlalchemy_url(self.instance_db)),
            "DAGSTER_HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            DATABASE_URL_ENV: self.contacts_url,
            BUCKET_DIR_ENV: str(self.bucket),
            SENSOR_INTERVAL_ENV: str(self.interval),
            **extra,
        }


# --- input files ----------------------------------------------------------------------------------


def workspace_names(count: int) -> list[str]:
    width = len(str(count))
    return [f"ws{i + 1:0{width}d}" for i in range(count)]


def split_files(staging: Path, files: int, rows: int, workspaces: int, extra: int) -> tuple[list[Upload], list[Path]]:
    """Generate ``(files + extra) * rows`` rows and split them into files of ``rows`` rows each.

    The first ``files`` go to the workspaces round-robin in upload order; the ``extra`` ones are
    the single-file and trigger inputs. Records are re-written with the generator's own CSV dialect,
    so a quoted newline never splits a row.
    """
    from bench.generate import generate

    whole = staging / "whole.csv"
    generate((files + extra) * rows, SEED, whole)
    names = workspace_names(workspaces)
    paths: list[Path] = []
    with whole.open(newline="", encoding="utf-8") as src:
        reader = csv.reader(src)
        header = next(reader)
        for index in range(files + extra):
            path = staging / (f"f{index + 1:05d}.csv" if index < files else f"x{index - files + 1:02d}.csv")
            with path.open("w", newline="", encoding="utf-8") as dst:
                writer = csv.writer(dst)
                writer.writerow(header)
                for _ in range(rows):
                    writer.writerow(next(reader))
            paths.append(path)
    whole.unlink()
    uploads = [Upload(names[i % workspaces], p.name, p) for i, p in enumerate(paths[:files])]
    return uploads, paths[files:]


def tick_files(folder: Path, count: int, workspaces: int) -> list[str]:
    """``count`` one-row files over ``workspaces`` workspaces ``tickNN``, dated a minute ago (settled)."""
    names = [f"tick{n}" for n in workspace_names(workspaces)]
    stamp = time.time_ns() - 60 * 10**9
    for ws in names:
        (folder / ws / "imports").mkdir(parents=True)
    for i in range(count):
        path = folder / names[i % workspaces] / "imports" / f"t{i + 1:05d}.csv"
        path.write_text(f"First Name,Last Name,Phone\nTick,File,+1 202 555 {i % 10_000:04d}\n")
        os.utime(path, ns=(stamp, stamp))
    return names


# --- landing and waiting ----------------------------------------------------------------------------


def land(uploads: list[Upload], bucket: Path) -> dict[str, float]:
    """Rename each file into the bucket, in order; return each key's landing time.

    A renamed file keeps its old mtime, so each is stamped with its landing moment first (strictly
    increasing): the sensor orders uploads by mtime, as it would real uploads.
    """
    landed: dict[str, float] = {}
    last = 0
    for upload in uploads:
        stamp = max(time.time_ns(), last + 1_000)
        os.utime(upload.staged, ns=(stamp, stamp))
        os.rename(upload.staged, bucket / upload.key)
        landed[upload.key] = time.time()
        last = stamp
    return landed


def wait_archived(bucket: Path, keys: list[str], timeout: float) -> dict[str, float]:
    """When each key's ``processed/<name>`` first showed up (scanning every 0.2 s), until all did or ``timeout``."""
    waiting: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        workspace, _, name = key.split("/")
        waiting[workspace].add(name)
    done: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        for workspace, names in list(waiting.items()):
            try:
                entries = os.scandir(bucket / workspace / "imports" / "processed")
            except FileNotFoundError:
                continue
            now = time.time()
            with entries:
                for entry in entries:
                    if entry.name in names:
                        names.discard(entry.name)
                        done[f"{workspace}/imports/{entry.name}"] = now
            if not names:
                del waiting[workspace]
        time.sleep(POLL_SECONDS)
    return done


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tail = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")
        time.sleep(POLL_SECONDS)


# --- Dagster processes ------------------------------------------------------------------------------


def sensor_ticks(instance: Any) -> list[Any]:
    """Every tick of the new-file sensor, newest first."""
    states = [s for s in instance.all_instigator_state() if s.instigator_name == SENSOR_NAME]
    ticks = [t for s in states for t in instance.get_ticks(s.instigator_origin_id, s.selector_id)]
    return sorted(ticks, key=lambda t: t.timestamp, reverse=True)


def ticked_since(instance: Any, since: float) -> bool:
    return any(t.is_completed and t.timestamp >= since for t in sensor_ticks(instance))


@contextlib.contextmanager
def daemon(world: World, instance: Any, env: dict[str, str], name: str) -> Iterator[None]:
    """A dagster-daemon, yielded once every daemon is healthy and the sensor has ticked since its start."""
    started = time.time()
    log_file = world.logs / f"{name}.log"
    command = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    with process_group(command, env=env, log=log_file, cwd=REPO_DIR) as process:

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited with {process.returncode}: {log_file.read_text()[-3000:]}")
            statuses = instance.get_daemon_statuses()
            return bool(statuses) and all(s.healthy for s in statuses.values()) and ticked_since(instance, started)

        wait_for(ready, START_TIMEOUT_SECONDS, "the daemon to be healthy and the sensor to tick", log_file)
        log(f"{name} ready after {time.time() - started:.1f} s")
        yield


@contextlib.contextmanager
def webserver(world: World, env: dict[str, str]) -> Iterator[str]:
    """A dagster-webserver; yields its URL once it has loaded the code location."""
    from contact_import_pipeline.app.graphql import DagsterApi, DagsterApiError

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_file = world.logs / "webserver.log"
    command = [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"]
    with process_group(command, env=env, log=log_file, cwd=REPO_DIR) as process:

        def loaded() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"dagster-webserver exited with {process.returncode}: {log_file.read_text()[-3000:]}"
                )
            try:
                DagsterApi(url).check_location()
                return True
            except DagsterApiError:
                return False

        wait_for(loaded, START_TIMEOUT_SECONDS, "the webserver to load the code location", log_file)
        yield url


# --- figures ----------------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``share`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def latency_figures(latencies: list[float]) -> dict[str, float] | None:
    if not latencies:
        return None
    return {
        "first": round(min(latencies), 2),
        "median": round(statistics.median(latencies), 2),
        "p95": round(percentile(latencies, 0.95), 2),
        "max": round(max(latencies), 2),
    }


def import_runs(instance: Any) -> list[Any]:
    """Run records of the import job, oldest first."""
    import dagster as dg

    from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME

    records = instance.get_run_records(filters=dg.RunsFilter(job_name=IMPORT_JOB_NAME))
    return sorted(records, key=lambda r: r.create_timestamp)


def wait_idle(world: World, instance: Any, log_name: str = "daemon") -> None:
    """Wait until every import run has finished: a file is archived before its run ends, and a
    daemon stopped (or a next file landed) meanwhile would kill (or queue behind) that run."""
    wait_for(
        lambda: all(r.dagster_run.is_finished for r in import_runs(instance)),
        RUNS_FINISH_TIMEOUT_SECONDS,
        "the import runs to finish",
        world.logs / f"{log_name}.log",
    )


def run_figures(records: list[Any]) -> dict[str, Any]:
    """How many runs, their outcome, how many files each carried, and their queue and work times."""
    from contact_import_pipeline.defs.progress import read_progress

    def files_of(record: Any) -> int:
        return len(record.dagster_run.run_config.get("ops", {}).get("raw_csv", {}).get("config", {}).get("files", []))

    queued = [r.start_time - r.create_timestamp.timestamp() for r in records if r.start_time]
    worked = [r.end_time - r.start_time for r in records if r.start_time and r.end_time]
    errors = [
        read_progress(r.dagster_run.tags).get("error") for r in records if r.dagster_run.status.value == "FAILURE"
    ]
    return {
        "runs": len(records),
        "by_status": dict(Counter(r.dagster_run.status.value for r in records)),
        "files_per_run": [files_of(r) for r in records],
        "queue_s_median": round(statistics.median(queued), 2) if queued else None,
        "run_s_median": round(statistics.median(worked), 2) if worked else None,
        "failure_reasons": [e for e in errors if e][:3],
    }


def ledger_check(world: World, keys: list[str]) -> dict[str, Any]:
    """Whether every key has exactly one ledger entry and it is ``completed``."""
    from contact_import_pipeline.storage.contacts import ContactsStore
    from contact_import_pipeline.storage.ledger import Ledger

    store = ContactsStore(world.contacts_url)
    try:
        entries = Ledger(store).entries()
    finally:
        store.dispose()
    by_key: dict[str, list[Any]] = defaultdict(list)
    for entry in entries:
        by_key[entry.file].append(entry)
    wanted = set(keys)
    missing = sorted(wanted - by_key.keys())
    repeated = sorted(k for k in wanted if len(by_key.get(k, [])) > 1)
    statuses = Counter(e.status for k in wanted for e in by_key.get(k, []))
    not_completed = [
        f"{e.file}: {e.status} {e.error or ''}".strip()
        for k in sorted(wanted)
        for e in by_key.get(k, [])
        if e.status != "completed"
    ]
    return {
        "completed_exactly_once": not missing and not repeated and statuses == Counter({"completed": len(wanted)}),
        "entries": sum(len(by_key.get(k, [])) for k in wanted),
        "by_status": dict(statuses),
        "missing": missing[:5],
        "repeated": repeated[:5],
        "not_completed": not_completed[:5],
    }


def workspace_contacts(dbname: str, workspaces: list[str]) -> dict[str, dict[str, tuple[str, str, str]]]:
    """Per workspace: phone -> (first name, last name, email), an empty email and NULL alike."""
    out: dict[str, dict[str, tuple[str, str, str]]] = {ws: {} for ws in workspaces}
    with psycopg.connect(conninfo(dbname)) as conn:
        rows = conn.execute(
            "SELECT workspace_id, phone_number, firstname, lastname, coalesce(email, '') FROM contacts "
            "WHERE workspace_id = ANY(%s)",
            (workspaces,),
        )
        for workspace, phone, first, last, email in rows:
            out[workspace][phone] = (first, last, email)
    return out


def compare_contacts(pipeline_db: str, reference_db: str, workspaces: list[str]) -> dict[str, Any]:
    """Whether both databases hold the same contacts per workspace; what differs in the first that does not."""
    ours, theirs = workspace_contacts(pipeline_db, workspaces), workspace_contacts(reference_db, workspaces)
    differing = [ws for ws in workspaces if ours[ws] != theirs[ws]]
    result: dict[str, Any] = {
        "identical": not differing,
        "differing_workspaces": len(differing),
        "pipeline_contacts": sum(len(c) for c in ours.values()),
        "reference_contacts": sum(len(c) for c in theirs.values()),
    }
    if differing:
        ws = differing[0]
        a, b = ours[ws], theirs[ws]
        changed = sorted(p for p in a.keys() & b.keys() if a[p] != b[p])
        result["first_difference"] = {
            "workspace": ws,
            "only_pipeline": len(a.keys() - b.keys()),
            "only_reference": len(b.keys() - a.keys()),
            "other_fields": len(changed),
            "example": {"phone": changed[0], "pipeline": a[changed[0]], "reference": b[changed[0]]}
            if changed
            else None,
        }
    return result


# --- the measurements -------------------------------------------------------------------------------


def measure_burst(world: World, instance: Any, uploads: list[Upload], timeout: float) -> dict[str, Any]:
    """Land every upload at once and wait until each is archived and every run has finished."""
    keys = [u.key for u in uploads]
    log(f"landing {len(uploads)} files")
    landed = land(uploads, world.bucket)
    done = wait_archived(world.bucket, keys, timeout)
    log(f"{len(done)} of {len(keys)} files archived")
    with contextlib.suppress(RuntimeError):  # a run that never finishes is reported by its status
        wait_idle(world, instance)
    first_landing = min(landed.values())
    wall = max(done.values()) - first_landing if done else None
    return {
        "files": len(keys),
        "archived": len(done),
        "wall_s": round(wall, 2) if wall else None,
        "files_per_min": round(len(done) / wall * 60, 1) if wall else None,
        "latency_s": latency_figures([done[k] - landed[k] for k in done]),
        "landing_s": round(max(landed.values()) - first_landing, 3),
        **run_figures(import_runs(instance)),
        "ledger": ledger_check(world, keys),
    }


def measure_single_local(world: World, instance: Any, paths: list[Path], workspace: str) -> list[float | None]:
    """Landing to archived, one file at a time on the idle daemon (None: not archived in time)."""
    (world.bucket / workspace / "imports").mkdir(parents=True, exist_ok=True)
    seconds: list[float | None] = []
    for path in paths:
        wait_idle(world, instance)
        upload = Upload(workspace, path.name, path)
        landed = land([upload], world.bucket)[upload.key]
        done = wait_archived(world.bucket, [upload.key], SINGLE_TIMEOUT_SECONDS).get(upload.key)
        seconds.append(round(done - landed, 2) if done else None)
        log(f"single local {upload.key}: {seconds[-1]} s")
    return seconds


def measure_trigger(world: World, instance: Any, url: str, paths: list[Path], workspace: str) -> list[dict[str, Any]]:
    """``trigger_import`` of one local file, then the run's status every 0.2 s until it finished."""
    from contact_import_pipeline.app.graphql import DagsterApi
    from contact_import_pipeline.app.trigger import trigger_import
    from contact_import_pipeline.storage.bucket import LocalFolderBucket

    api = DagsterApi(url)
    out = []
    for path in paths:
        wait_idle(world, instance)
        started = time.perf_counter()
        result = trigger_import(
            [str(path)], workspace, dagster_url=url, bucket=LocalFolderBucket(root=str(world.bucket))
        )
        deadline = time.monotonic() + SINGLE_TIMEOUT_SECONDS
        while not (state := api.read_run(result.run_id)).finished and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        out.append({"seconds": round(time.perf_counter() - started, 2), "status": state.status, "key": result.keys[0]})
        log(f"trigger {result.keys[0]}: {out[-1]['seconds']} s, {state.status}")
    return out


def measure_single_s3(world: World, instance: Any, paths: list[Path], workspace: str) -> dict[str, Any]:
    """One file at a time put into a moto S3 bucket, on a daemon restarted with that bucket."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        return {"skipped": f"moto is not importable ({exc})"}
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    from contact_import_pipeline.storage.bucket import BUCKET_ENV, S3_BUCKET_ENV, S3_ENDPOINT_ENV

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=S3_REGION,
            aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )
        client.create_bucket(Bucket=S3_BUCKET_NAME)
        env = world.env(
            **{
                BUCKET_ENV: "s3",
                S3_BUCKET_ENV: S3_BUCKET_NAME,
                S3_ENDPOINT_ENV: endpoint,
                "AWS_DEFAULT_REGION": S3_REGION,
                **S3_CREDENTIALS,
            }
        )
        seconds: list[float | None] = []
        with daemon(world, instance, env, "daemon-s3"):
            for path in paths:
                wait_idle(world, instance, "daemon-s3")
                key = f"{workspace}/imports/{path.name}"
                client.put_object(Bucket=S3_BUCKET_NAME, Key=key, Body=path.read_bytes())
                landed = time.time()
                archived = f"{workspace}/imports/processed/{path.name}"
                deadline = time.monotonic() + SINGLE_TIMEOUT_SECONDS
                done = None
                while done is None and time.monotonic() < deadline:
                    if client.list_objects_v2(Bucket=S3_BUCKET_NAME, Prefix=archived).get("KeyCount", 0):
                        done = time.time()
                    else:
                        time.sleep(POLL_SECONDS)
                seconds.append(round(done - landed, 2) if done else None)
                log(f"single s3 {key}: {seconds[-1]} s")
            wait_idle(world, instance, "daemon-s3")
        return {"seconds": seconds, "keys": [f"{workspace}/imports/{p.name}" for p in paths]}
    finally:
        server.stop()


def evaluate_sensor(instance: Any, folder: Path) -> dict[str, Any]:
    """Two evaluations of new_files_sensor over the settled files in ``folder``: the first sees them
    as new (pending), the second requests their runs and is the one that counts."""
    import dagster as dg

    from contact_import_pipeline.defs.sensors import new_files_sensor
    from contact_import_pipeline.storage.bucket import LocalFolderBucket

    bucket = LocalFolderBucket(root=str(folder))
    timings, cursor, result = [], None, None
    for _ in range(2):
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"bucket": bucket})
        started = time.perf_counter()
        result = new_files_sensor(context)
        timings.append(time.perf_counter() - started)
        cursor = result.cursor
    requests = result.run_requests if result else []
    return {
        "pending_s": round(timings[0], 2),
        "seconds": round(timings[1], 2),
        "runs_requested": len(requests),
        "files_requested": sum(len(r.run_config["ops"]["raw_csv"]["config"]["files"]) for r in requests),
    }


def measure_daemon_tick(world: World, instance: Any, folder: Path, workspaces: list[str]) -> dict[str, Any]:
    """The daemon's own ticks over the same files: the first after they land (they are pending)
    and the next (it requests the runs). The daemon is stopped right after, runs unfinished."""
    with daemon(world, instance, world.env(), "daemon-tick"):
        # Land right after a tick ended, so the next tick sees every file at once.
        latest = sensor_ticks(instance)[0].timestamp
        wait_for(
            lambda: sensor_ticks(instance)[0].timestamp > latest and sensor_ticks(instance)[0].is_completed,
            START_TIMEOUT_SECONDS,
            "a sensor tick",
            world.logs / "daemon-tick.log",
        )
        for ws in workspaces:
            os.rename(folder / ws, world.bucket / ws)
        landed = time.time()

        def after() -> list[Any]:
            return [t for t in reversed(sensor_ticks(instance)) if t.timestamp >= landed and t.is_completed]

        wait_for(
            lambda: len(after()) >= 2,
            START_TIMEOUT_SECONDS,
            "two sensor ticks over the files",
            world.logs / "daemon-tick.log",
        )
        pending, requesting = after()[:2]
    return {
        "pending_tick_s": round(pending.end_timestamp - pending.timestamp, 2),
        "tick_s": round(requesting.end_timestamp - requesting.timestamp, 2),
        "status": requesting.status.value,
        "runs_requested": len(requesting.run_ids),
    }


def run_reference(uploads: list[Upload], source: Callable[[Upload], Path], dbname: str) -> dict[str, Any]:
    """The reference algorithm as a fresh process per file, one after another in upload order."""
    started = time.perf_counter()
    inside = 0.0
    for upload in uploads:
        command = [
            sys.executable,
            "-m",
            "bench.baselines",
            "reference-file",
            str(source(upload)),
            "--workspace",
            upload.workspace,
            "--database",
            dbname,
        ]
        done = subprocess.run(command, cwd=REPO_DIR, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(
                f"reference script on {upload.key} exited {done.returncode}: {done.stderr.strip()[-500:]}"
            )
        inside += json.loads(done.stdout.strip().splitlines()[-1])["seconds"]
    wall = time.perf_counter() - started
    return {
        "wall_s": round(wall, 2),
        "files_per_min": round(len(uploads) / wall * 60, 1),
        "script_s_sum": round(inside, 2),
    }


def targets(shape: tuple[int, int], interval: int, figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets against what was measured: the slowest of repeated figures, and
    ``met`` None when not measured (or, for the burst rate, measured at another shape)."""
    burst_rate = figures["burst"]["files_per_min"]
    trigger = [t["seconds"] if t["status"] == "SUCCESS" else None for t in figures.get("trigger", [])]
    tick = figures.get("sensor_tick", {})
    evaluation, daemon_tick = tick.get("evaluation", {}).get("seconds"), tick.get("daemon", {}).get("tick_s")
    checks: list[tuple[str, list[float | None], Callable[[float], bool] | None]] = [
        (
            f"≥ {TARGET_FILES_PER_MIN:,.0f} files/min for {TARGET_SHAPE[0]:,} files of {TARGET_SHAPE[1]} rows",
            [burst_rate],
            (lambda v: v >= TARGET_FILES_PER_MIN) if shape == TARGET_SHAPE else None,
        ),
        (
            f"single file archived ≤ 2×interval+5 = {2 * interval + 5} s (local)",
            figures.get("single_local", []),
            lambda v: v <= 2 * interval + 5,
        ),
        (
            f"single file archived ≤ interval+5 = {interval + 5} s (S3)",
            figures.get("single_s3", {}).get("seconds", []),
            lambda v: v <= interval + 5,
        ),
        (f"trigger launch to done ≤ {TARGET_TRIGGER_SECONDS:.0f} s", trigger, lambda v: v <= TARGET_TRIGGER_SECONDS),
        (
            f"sensor tick over {TICK_FILES:,} files < {TARGET_TICK_SECONDS:.0f} s (one evaluation)",
            [evaluation] if evaluation is not None else [],
            lambda v: v < TARGET_TICK_SECONDS,
        ),
        (
            f"the same, the daemon's tick (evaluation and submitting the runs) < {TARGET_TICK_SECONDS:.0f} s",
            [daemon_tick] if daemon_tick is not None else [],
            lambda v: v < TARGET_TICK_SECONDS,
        ),
    ]
    out = []
    for target, values, rule in checks:
        done = [v for v in values if v is not None]
        measured = max(done) if done else None
        # A value that never came (file not archived, run not successful) misses the target.
        met = (
            None
            if rule is None or not values
            else (measured is not None and len(done) == len(values) and rule(measured))
        )
        out.append({"target": target, "measured": measured, "unfinished": len(values) - len(done), "met": met})
    return out


def current_path(bucket: Path, upload: Upload) -> Path:
    """Where the upload is now: archived by the pipeline, else still waiting in imports/."""
    archived = bucket / upload.workspace / "imports" / "processed" / upload.name
    return archived if archived.exists() else bucket / upload.key


def measure(
    files: int, rows: int, workspaces: int, interval: int, parts: set[str], keep: bool, timeout: float
) -> dict[str, Any]:
    """Every figure of the line, in one fresh world that is removed afterwards (unless ``keep``)."""
    import dagster as dg

    root = Path(tempfile.mkdtemp(prefix="bench_many_files_"))
    world = World(
        home=root / "dagster_home",
        bucket=root / "bucket",
        logs=root / "logs",
        instance_db=create_database(),
        contacts_db=create_database(),
        interval=interval,
    )
    reference_db = create_database()
    log(
        f"work folder {root}, databases {world.instance_db} (dagster), {world.contacts_db} (contacts), {reference_db} (reference)"
    )
    instance = None
    try:
        for folder in (world.home, world.bucket, world.logs, root / "staging", root / "tick"):
            folder.mkdir()
        shutil.copy(REPO_DIR / "dagster.yaml", world.home / "dagster.yaml")
        create_schema(world.contacts_db)
        create_schema(reference_db)
        os.environ.update(dagster_pg_env(sqlalchemy_url(world.instance_db)))  # for this process's own instance
        instance = dg.DagsterInstance.from_config(str(world.home))

        extra = SINGLE_REPEATS * sum(1 for part in ("single", "trigger", "s3") if part in parts)
        uploads, extras = split_files(root / "staging", files, rows, workspaces, extra)
        for ws in {u.workspace for u in uploads}:
            (world.bucket / ws / "imports").mkdir(parents=True)
        figures: dict[str, Any] = {
            "shape": {"files": files, "rows": rows, "workspaces": workspaces, "interval_s": interval}
        }
        exactly_once: list[str] = []

        with daemon(world, instance, world.env(), "daemon"):
            figures["burst"] = measure_burst(world, instance, uploads, timeout)
            if "single" in parts:
                singles, extras = extras[:SINGLE_REPEATS], extras[SINGLE_REPEATS:]
                figures["single_local"] = measure_single_local(world, instance, singles, "single")
                exactly_once += [f"single/imports/{p.name}" for p in singles]
            if "trigger" in parts:
                triggered, extras = extras[:SINGLE_REPEATS], extras[SINGLE_REPEATS:]
                with webserver(world, world.env()) as url:
                    figures["trigger"] = measure_trigger(world, instance, url, triggered, "trigger")
                exactly_once += [t["key"] for t in figures["trigger"]]
            wait_idle(world, instance)
        if "s3" in parts:
            figures["single_s3"] = measure_single_s3(world, instance, extras[:SINGLE_REPEATS], "single-s3")
            exactly_once += figures["single_s3"].get("keys", [])
        if exactly_once:  # no second run of a single or triggered file (the sensor skips triggered ones)
            figures["singles_ledger"] = ledger_check(world, exactly_once)
        if "tick" in parts:
            tick_folder = root / "tick"
            tick_workspaces = tick_files(tick_folder, TICK_FILES, workspaces)
            log(f"evaluating {SENSOR_NAME} over {TICK_FILES:,} files")
            figures["sensor_tick"] = {
                "files": TICK_FILES,
                "evaluation": evaluate_sensor(instance, tick_folder),
                "daemon": measure_daemon_tick(world, instance, tick_folder, tick_workspaces),
            }

        log(f"reference script per file on {len(uploads)} files")
        figures["reference"] = run_reference(uploads, lambda u: current_path(world.bucket, u), reference_db)
        burst_rate, reference_rate = figures["burst"]["files_per_min"], figures["reference"]["files_per_min"]
        figures["pipeline_vs_reference"] = round(burst_rate / reference_rate, 2) if burst_rate else None
        figures["contacts"] = compare_contacts(world.contacts_db, reference_db, workspace_names(workspaces))
        figures["targets"] = targets((files, rows), interval, figures)
        return figures
    finally:
        if instance is not None:
            instance.dispose()
        if keep:
            log(f"kept {root} and databases {world.instance_db}, {world.contacts_db}, {reference_db}")
        else:
            for db in (world.instance_db, world.contacts_db, reference_db):
                drop_database(db)
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=DEFAULT_FILES, help="N files in the burst")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="R rows per file")
    parser.add_argument(
        "--workspaces", type=int, default=DEFAULT_WORKSPACES, help="W workspaces (files go round-robin)"
    )
    parser.add_argument("--interval", type=int, default=DEFAULT_INTERVAL_SECONDS, help="sensor interval S, seconds")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"besides the burst and the reference: {', '.join(PARTS)}"
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait for the burst (default 600 + 2 per file)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, bucket) and the databases")
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if parts - set(PARTS):
        parser.error(f"unknown parts {sorted(parts - set(PARTS))}; choose from {', '.join(PARTS)}")
    timeout = args.timeout if args.timeout is not None else 600 + 2 * args.files
    print(json.dumps(measure(args.files, args.rows, args.workspaces, args.interval, parts, args.keep, timeout)))


if __name__ == "__main__":
    main()
