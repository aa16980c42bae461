"""Helpers shared by the tests and by bench/: input files, the CLI in-process, throwaway PostgreSQL
databases, child process groups, polling, and the import job as step processes rebuild it.

Plain functions, no fixtures (those live in conftest.py). At module level nothing here imports
Dagster, pandas or the pipeline beyond its vocabulary, so importing it costs bench/ nothing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlalchemy as sa

from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME

if TYPE_CHECKING:
    import dagster as dg
    import pandas as pd
    import pytest

    from contact_import_pipeline.defs.resources import BucketResource
    from contact_import_pipeline.model import BatchOutcome
    from contact_import_pipeline.storage.bucket import LocalFolderBucket, S3Bucket
    from contact_import_pipeline.storage.contacts import ContactsStore

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
# Header rows of real CRM and address-book exports, three contacts each.
EXPORTS = TESTS_DIR / "data" / "exports"
# The default local bucket, relative to a test's own folder (conftest's isolated_workdir).
LOCAL_BUCKET = Path(".contact_import") / "bucket"
NUMBERED_HEADER = ["first_name", "last_name", "email", "phone"]
# A phone no region accepts: its row fails with invalid_phone.
INVALID_PHONE = "12345"
# Generous bound for any wait on a busy, shared 2-core machine; a test that needs it has already failed.
WAIT_SECONDS = 150.0
# Seconds a stopped process group gets to exit on SIGTERM before the rest is killed.
STOP_GRACE_SECONDS = 15.0

PG_ADMIN_ENV = "CONTACT_IMPORT_TEST_PG"
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


# --- input files --------------------------------------------------------------------------------


def phone_of(i: int) -> str:
    """E.164 form of numbered row ``i``'s phone (distinct for i < 100,000)."""
    return f"+1212{200 + i // 10000:03d}{i % 10000:04d}"


def numbered_rows(count: int, start: int = 0) -> list[list[str]]:
    """Rows of NUMBERED_HEADER with distinct valid US numbers ``phone_of(start) … phone_of(start+count-1)``,
    written as people type them: (212) 2xx-xxxx."""
    return [
        [f"First{i}", f"Last{i}", f"user{i}@example.com", f"(212) {200 + i // 10000:03d}-{i % 10000:04d}"]
        for i in range(start, start + count)
    ]


def person(i: int, email: str = "") -> list[str]:
    """A row of (First Name, Last Name, Email, Phone) with the valid, distinct phone ``e164(i)`` for
    ``i`` < 10,000 and the given email (none by default, so update imports have a field to fill)."""
    return [f"First{i}", f"Last{i}", email, f"(212) 555-{i:04d}"]


def e164(i: int) -> str:
    """E.164 form of ``person(i)``'s phone."""
    return f"+1212555{i:04d}"


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    """A CSV file as exports write it: UTF-8, CRLF line ends, quoted where needed."""
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *rows])
    return buf.getvalue().encode("utf-8")


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> Path:
    path.write_bytes(csv_bytes(header, rows))
    return path


def write_numbered_csv(path: Path, start: int, count: int, invalid: int = 0) -> Path:
    """``count`` numbered rows from ``start``, then ``invalid`` rows whose phone is not a phone number."""
    rows = numbered_rows(count, start) + [[f"Bad{i}", "", "", INVALID_PHONE] for i in range(invalid)]
    return write_csv(path, NUMBERED_HEADER, rows)


def upload(key: str, data: bytes, uploaded_at: float | None = None) -> Path:
    """Put a file in the default local bucket, dated ``uploaded_at`` (its mtime) when given."""
    path = LOCAL_BUCKET / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if uploaded_at is not None:
        os.utime(path, (uploaded_at, uploaded_at))
    return path


# --- the CLI in this process ----------------------------------------------------------------------


class CliResult(NamedTuple):
    """Exit code and output of one ``contact-import`` command."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """The JSON a ``--json`` command printed last."""
        return json.loads(self.out.strip().splitlines()[-1])


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> CliResult:
    """Run ``contact-import <argv>`` in this process (faster than a subprocess, same code path)."""
    from contact_import_pipeline.app import cli

    code = cli.main(argv)
    captured = capsys.readouterr()
    return CliResult(code, captured.out, captured.err)


# --- the contacts store and the bucket ------------------------------------------------------------


def batch_frame(rows: Sequence[tuple[str, ...]], lines: Sequence[int]) -> pd.DataFrame:
    """An insert batch of one import as ``ContactsStore.insert_batch`` takes it: BATCH_COLUMNS values,
    line numbers, and the import's position (0)."""
    import pandas as pd

    from contact_import_pipeline.model import BATCH_COLUMNS

    return pd.DataFrame(list(rows), columns=list(BATCH_COLUMNS)).assign(row=list(lines), **{"import": 0})


def insert_rows(
    store: ContactsStore,
    rows: Sequence[tuple[str, ...]],
    *,
    workspace_id: str,
    import_id: str = "pre",
    import_tag: str = "pre",
    batch_index: int = 0,
    lines: Sequence[int] | None = None,
    update: bool = False,
) -> BatchOutcome:
    """Insert ``rows`` (BATCH_COLUMNS tuples) as one batch of one import and return its outcome."""
    from contact_import_pipeline.model import BatchImport, BatchOutcome

    share = BatchImport(
        import_id=import_id, workspace_id=workspace_id, import_tag=import_tag, metadata={"import_tag": import_tag}
    )
    lines = lines if lines is not None else range(2, 2 + len(rows))
    outcomes = store.insert_batch(
        run_key=import_id, batch_index=batch_index, imports=[share], batch=batch_frame(rows, lines), update=update
    )
    return outcomes.get(import_id) or BatchOutcome(rows=0, imported=0, skipped=0, updated=0, conflict_rows=[])


def as_resource(bucket: LocalFolderBucket | S3Bucket) -> BucketResource:
    """The Dagster resource that opens ``bucket`` (sensors and assets take the resource)."""
    from contact_import_pipeline.defs.resources import BucketResource
    from contact_import_pipeline.storage.bucket import S3Bucket

    if isinstance(bucket, S3Bucket):
        return BucketResource(
            kind="s3",
            s3_bucket=bucket.bucket,
            s3_prefix=bucket.prefix,
            endpoint_url=bucket.endpoint_url or "",
            region_name=bucket.region_name or "",
            aws_access_key_id=bucket.aws_access_key_id or "",
            aws_secret_access_key=bucket.aws_secret_access_key or "",
        )
    return BucketResource(kind="local", root=bucket.root)


# --- PostgreSQL -----------------------------------------------------------------------------------


def pg_admin_url() -> str:
    return os.environ.get(PG_ADMIN_ENV, DEFAULT_PG_ADMIN_URL)


def _pg_unreachable() -> str | None:
    """None if PostgreSQL answers, else the reason."""
    try:
        engine = sa.create_engine(pg_admin_url(), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except sa.exc.SQLAlchemyError as exc:
        return str(exc).splitlines()[0]


def require_service(message: str) -> None:
    """A service a test needs is missing: fail under CI=true, skip elsewhere, with ``message``."""
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_postgres() -> None:
    """Fail under CI, skip elsewhere, when PostgreSQL is not reachable."""
    reason = _pg_unreachable()
    if reason is not None:
        require_service(
            f"PostgreSQL not reachable at {pg_admin_url()} ({reason}). Start it "
            "(pg_ctlcluster --skip-systemctl-redirect <version> main start) or point "
            f"{PG_ADMIN_ENV} at a server where this user may create databases."
        )


def create_pg_database() -> str:
    """Create an empty database and return its psycopg 3 URL."""
    name = f"ci_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.engine.make_url(pg_admin_url()).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(pg_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """A new PostgreSQL database for the block, dropped afterwards."""
    require_postgres()
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


def dagster_pg_env(url: str) -> dict[str, str]:
    """DAGSTER_PG_* for the repository's production dagster.yaml, pointing at ``url``'s database
    (an empty password works with trust auth)."""
    parsed = sa.engine.make_url(url)
    return {
        "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parsed.port or 5432),
        "DAGSTER_PG_USER": parsed.username or "postgres",
        "DAGSTER_PG_PASSWORD": parsed.password or "",
        "DAGSTER_PG_DB": parsed.database or "",
    }


def _pg_bindir() -> Path | None:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if (Path(out) / "initdb").exists():
            return Path(out)
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class PrivateCluster:
    """A throwaway PostgreSQL cluster on a free port, so a test may restart it without touching others."""

    def __init__(self, bindir: Path, data: Path, port: int) -> None:
        self.bindir, self.data, self.port = bindir, data, port
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        # The server's output must go to a file: pg_ctl's own pipes would be held open by the server.
        self.log = data / "server.log"

    def _ctl(self, *args: str) -> None:
        _as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", options, "-l", str(self.log), "start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is terminated and open transactions roll back."""
        self._ctl("-m", "fast", "-l", str(self.log), "restart")

    def stop(self) -> None:
        self._ctl("-m", "immediate", "stop")


def _as_postgres(argv: list[str]) -> None:
    """Run a PostgreSQL server tool; as root it must run as the postgres OS user."""
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)


@contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """initdb + start a cluster in a temporary folder; stopped and removed afterwards.

    Raises ``ClusterUnavailable`` with the reason when this machine cannot create one.
    """
    bindir = _pg_bindir()
    if bindir is None:
        raise ClusterUnavailable("no PostgreSQL server binaries (initdb) found")
    root = Path(tempfile.mkdtemp(prefix="contact-import-pg-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        try:
            _as_postgres([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
        except (OSError, subprocess.CalledProcessError, LookupError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            raise ClusterUnavailable(f"initdb failed: {detail.strip()[:300]}") from exc
        cluster = PrivateCluster(bindir, data, free_port())
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


class ClusterUnavailable(RuntimeError):
    """A private PostgreSQL cluster cannot be created on this machine."""


# --- processes, ports and waiting -----------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _default_signals() -> None:
    """A shell without job control starts background jobs with SIGINT ignored; undo that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def signal_group(process: subprocess.Popen, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group ``process`` leads (gone already is fine)."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def start_group(command: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """Start ``command`` in a process group of its own, its output appended to ``log``.

    A Dagster daemon or webserver starts code servers and run workers; a group is stopped as a
    whole, so none of them outlives the test (holding database connections or ports).
    """
    with log.open("ab") as output:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_signals,
        )


def stop_groups(processes: Sequence[subprocess.Popen], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM each process group, then SIGKILL what is left of them after ``grace`` seconds."""
    for process in processes:
        signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        signal_group(process, signal.SIGKILL)  # stragglers: code servers, run workers
        process.wait()


@contextmanager
def process_group(
    command: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path
) -> Iterator[subprocess.Popen]:
    """``start_group`` for the block, stopped as a whole afterwards."""
    process = start_group(command, env=env, log=log, cwd=cwd)
    try:
        yield process
    finally:
        stop_groups([process])


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


# --- the import job in step processes -------------------------------------------------------------


def reconstructable_job(name: str = IMPORT_JOB_NAME) -> dg.ReconstructableJob:
    """``import_job`` (or ``import_job_celery``) as multiprocess and Celery steps rebuild it outside
    a code server: by the pipeline's own reconstructor of that name in its definitions module."""
    import dagster as dg

    return dg.build_reconstructable_job("contact_import_pipeline.defs.definitions", name)
