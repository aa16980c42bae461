"""Shared fixtures: an isolated working folder per test, and throwaway PostgreSQL databases.

Tests that need PostgreSQL fail when CI=true and it is missing; elsewhere they skip and say how
to enable them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import sqlalchemy as sa

if TYPE_CHECKING:
    from contact_import_pipeline.storage.contacts import ContactsStore
    from contact_import_pipeline.model import BatchOutcome

PG_ADMIN_ENV = "CONTACT_IMPORT_TEST_PG"
DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# Environment that would point a test at shared state instead of its own folder.
ISOLATED_ENV = (
    "DAGSTER_HOME", "CONTACTS_DATABASE_URL", "CONTACT_BUCKET", "CONTACT_BUCKET_DIR", "CONTACT_S3_BUCKET",
    "CONTACT_S3_PREFIX", "CONTACT_S3_ENDPOINT_URL", "CONTACT_IMPORT_CLEANUP", "CONTACT_IMPORT_ALLOW_PRIVATE_URLS",
)


def pg_admin_url() -> str:
    return os.environ.get(PG_ADMIN_ENV, DEFAULT_PG_ADMIN_URL)


def _pg_reachable() -> str | None:
    """None if PostgreSQL answers, else the reason."""
    try:
        engine = sa.create_engine(pg_admin_url(), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except sa.exc.SQLAlchemyError as exc:
        return str(exc).splitlines()[0]


def require_postgres() -> None:
    """Fail under CI, skip elsewhere, when PostgreSQL is not reachable."""
    reason = _pg_reachable()
    if reason is None:
        return
    message = (
        f"PostgreSQL not reachable at {pg_admin_url()} ({reason}). Start it "
        "(pg_ctlcluster --skip-systemctl-redirect <version> main start) or point "
        f"{PG_ADMIN_ENV} at a server where this user may create databases."
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


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


@pytest.fixture(autouse=True)
def isolated_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test in its own folder, so local defaults (.contact_import/...) never leak."""
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


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
    """DAGSTER_PG_* for the repo's dagster.yaml, pointing at ``url``'s database (an empty
    password works with trust auth)."""
    parsed = sa.engine.make_url(url)
    return {
        "DAGSTER_PG_HOST": parsed.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(parsed.port or 5432),
        "DAGSTER_PG_USER": parsed.username or "postgres",
        "DAGSTER_PG_PASSWORD": parsed.password or "",
        "DAGSTER_PG_DB": parsed.database or "",
    }


@pytest.fixture
def instance_db() -> Iterator[str]:
    """A fresh PostgreSQL database for Dagster's own storage, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The contacts database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'contacts.db'}"
        return
    with fresh_pg_database() as url:
        yield url


def batch_frame(rows: list[tuple[str, ...]], lines: list[int]) -> pd.DataFrame:
    """An insert batch of one import as ``ContactsStore.insert_batch`` takes it: BATCH_COLUMNS values,
    line numbers, and the import's position (0)."""
    from contact_import_pipeline.model import BATCH_COLUMNS

    return pd.DataFrame(rows, columns=list(BATCH_COLUMNS)).assign(row=lines, **{"import": 0})


def insert_rows(
    store: "ContactsStore",
    rows: list[tuple[str, ...]],
    *,
    workspace_id: str,
    import_id: str = "pre",
    import_tag: str = "pre",
    batch_index: int = 0,
    lines: list[int] | None = None,
    update: bool = False,
) -> "BatchOutcome":
    """Insert ``rows`` (BATCH_COLUMNS tuples) as one batch of one import and return its outcome."""
    from contact_import_pipeline.model import BatchImport, BatchOutcome

    share = BatchImport(import_id=import_id, workspace_id=workspace_id, import_tag=import_tag, metadata={"import_tag": import_tag})
    lines = lines if lines is not None else list(range(2, 2 + len(rows)))
    outcomes = store.insert_batch(
        run_key=import_id, batch_index=batch_index, imports=[share], batch=batch_frame(rows, lines), update=update
    )
    return outcomes.get(import_id) or BatchOutcome(rows=0, imported=0, skipped=0, updated=0, conflict_rows=[])


def as_resource(bucket: "ContactBucket") -> "BucketResource":
    """The Dagster resource that opens ``bucket`` (sensors and assets take the resource)."""
    from contact_import_pipeline.defs.resources import BucketResource
    from contact_import_pipeline.storage.bucket import S3Bucket

    if isinstance(bucket, S3Bucket):
        return BucketResource(
            kind="s3", s3_bucket=bucket.bucket, s3_prefix=bucket.prefix, endpoint_url=bucket.endpoint_url or "",
            region_name=bucket.region_name or "", aws_access_key_id=bucket.aws_access_key_id or "",
            aws_secret_access_key=bucket.aws_secret_access_key or "",
        )
    return BucketResource(kind="local", root=bucket.root)
