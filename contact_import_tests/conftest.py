"""Shared fixtures: an isolated working folder per test, throwaway PostgreSQL databases (shared
server or a private cluster), the moto S3 server, and markers derived from what a test uses.

Tests that need PostgreSQL fail when CI=true and it is missing; elsewhere they skip and say how
to enable them. Plain helpers live in helpers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contact_import_tests.helpers import (
    ClusterUnavailable,
    PrivateCluster,
    fresh_pg_database,
    private_cluster,
    require_service,
)
from contact_import_tests.s3_server import big_s3_bucket, s3_endpoint  # noqa: F401 (fixtures)

# Environment that would point a test at shared state instead of its own folder.
ISOLATED_ENV = (
    "DAGSTER_HOME",
    "CONTACTS_DATABASE_URL",
    "CONTACT_BUCKET",
    "CONTACT_BUCKET_DIR",
    "CONTACT_S3_BUCKET",
    "CONTACT_S3_PREFIX",
    "CONTACT_S3_ENDPOINT_URL",
    "CONTACT_IMPORT_CLEANUP",
    "CONTACT_IMPORT_ALLOW_PRIVATE_URLS",
)
# Fixtures that give a test PostgreSQL: its items are marked ``postgres`` without anyone having to remember.
POSTGRES_FIXTURES = frozenset({"pg_url", "instance_db", "private_pg"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that takes a PostgreSQL fixture ``postgres`` (``database_url[postgres]`` is
    marked by its parameter), so ``-m "not postgres"`` leaves out exactly the tests that need it."""
    for item in items:
        if POSTGRES_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def isolated_workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run every test in its own folder, so local defaults (.contact_import/...) never leak."""
    for name in ISOLATED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The contacts database, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'contacts.db'}"
        return
    with fresh_pg_database() as url:
        yield url


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    """A PostgreSQL cluster of one test alone, which it may stop or restart (the shared server must
    never be). Fails under CI=true when it cannot be created; skips elsewhere."""
    try:
        with private_cluster() as cluster:
            yield cluster
    except ClusterUnavailable as exc:
        require_service(f"cannot create a private PostgreSQL cluster: {exc}")
