"""Dagster resources: the bucket uploads live in, and the contacts database.

Each setting defaults to the environment variable the README's Configuration table names (read
when the definitions load), so one environment drives the webserver, the daemon, runs and the CLI.
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from contact_import_pipeline.errors import OptionsError
from contact_import_pipeline.settings import BUCKET_DIR_ENV, BUCKET_ENV, S3_BUCKET_ENV, S3_ENDPOINT_ENV, S3_PREFIX_ENV
from contact_import_pipeline.storage.bucket import DEFAULT_BUCKET_DIR, ContactBucket, LocalFolderBucket, S3Bucket
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.schema import DATABASE_URL_ENV, default_database_url


def _env(*names: str, default: str = "") -> str:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return default


class BucketResource(dg.ConfigurableResource):
    """Where uploads, options sidecars, rejects files and archived sources live."""

    kind: str = Field(
        default_factory=lambda: _env(BUCKET_ENV, default="local").lower(),
        description=f"'local' (a folder) or 's3'. Default: ${BUCKET_ENV}, else local.",
    )
    root: str = Field(
        default_factory=lambda: _env(BUCKET_DIR_ENV, default=DEFAULT_BUCKET_DIR),
        description=f"Local folder holding <workspace_id>/imports/... Default: ${BUCKET_DIR_ENV}, else {DEFAULT_BUCKET_DIR}.",
    )
    s3_bucket: str = Field(
        default_factory=lambda: _env(S3_BUCKET_ENV), description=f"S3 bucket name. Default: ${S3_BUCKET_ENV}."
    )
    s3_prefix: str = Field(
        default_factory=lambda: _env(S3_PREFIX_ENV), description=f"Key prefix in the bucket. Default: ${S3_PREFIX_ENV}."
    )
    endpoint_url: str = Field(
        default_factory=lambda: _env(S3_ENDPOINT_ENV),
        description=f"S3-compatible endpoint (MinIO, Supabase Storage). Default: ${S3_ENDPOINT_ENV}, else AWS.",
    )
    region_name: str = Field(
        default_factory=lambda: _env("AWS_REGION", "AWS_DEFAULT_REGION"), description="Default: $AWS_REGION."
    )
    aws_access_key_id: str = Field(
        default_factory=lambda: _env("AWS_ACCESS_KEY_ID"), description="Default: boto3's own lookup."
    )
    aws_secret_access_key: str = Field(
        default_factory=lambda: _env("AWS_SECRET_ACCESS_KEY"), description="Default: boto3's own lookup."
    )

    def open(self) -> ContactBucket:
        """The bucket these settings name."""
        if self.kind != "s3":
            return LocalFolderBucket(self.root)
        if not self.s3_bucket:
            raise OptionsError(f"{BUCKET_ENV}=s3 needs the bucket name in {S3_BUCKET_ENV}")
        return S3Bucket(
            bucket=self.s3_bucket,
            prefix=self.s3_prefix,
            endpoint_url=self.endpoint_url or None,
            region_name=self.region_name or None,
            aws_access_key_id=self.aws_access_key_id or None,
            aws_secret_access_key=self.aws_secret_access_key or None,
        )


def bucket_from_env() -> ContactBucket:
    """The bucket the environment names, outside Dagster (the CLI and ``trigger``)."""
    return BucketResource().open()


class ContactsDatabase(dg.ConfigurableResource):
    """The database holding the ``contacts`` table and the ledger."""

    url: str = Field(
        default="",
        description=f"SQLAlchemy URL of the contacts database. Default: ${DATABASE_URL_ENV}, else the local "
        "SQLite file .contact_import/contacts.db. PostgreSQL URLs use psycopg 3.",
    )

    def store(self, read_only: bool = False) -> ContactsStore:
        return ContactsStore(self.url or default_database_url(), read_only=read_only)
