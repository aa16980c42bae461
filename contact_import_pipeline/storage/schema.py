"""The contacts database's tables (SQLAlchemy Core) and how its URL is read.

Both dialects share the definitions: ``contacts`` (the reference schema, unique per workspace and
phone), ``contact_import_batches`` (one row per landed batch and import), ``contact_import_plans``
(each unfinished import's planned phones) and ``contact_imports`` (the ledger).
"""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

DATABASE_URL_ENV = "CONTACTS_DATABASE_URL"
DEFAULT_DATABASE_PATH = Path(".contact_import") / "contacts.db"


metadata_obj = sa.MetaData()
_json = postgresql.JSONB().with_variant(sa.JSON(), "sqlite")

contacts = sa.Table(
    "contacts",
    metadata_obj,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("workspace_id", sa.Text(), nullable=False),
    sa.Column("phone_number", sa.Text()),
    sa.Column("firstname", sa.String(), nullable=False),
    sa.Column("lastname", sa.String(), nullable=False),
    sa.Column("email", sa.Text()),
    sa.Column("lead_source", sa.String()),
    sa.Column("market", sa.String()),
    sa.Column("product", sa.String()),
    sa.Column("lead_status", sa.String()),
    sa.Column("st_address", sa.String()),
    sa.Column("city", sa.String()),
    sa.Column("state", sa.String()),
    sa.Column("zip", sa.String()),
    sa.Column("conversation_status", sa.Text(), server_default=sa.text("'New'")),
    sa.Column("tags", _json, server_default=sa.text("'[]'")),
    sa.Column("metadata", _json, server_default=sa.text("'{}'")),
    sa.Column("opt_in_through", sa.String(), server_default=sa.text("'manual'")),
    sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)
sa.Index("contacts_workspace_phone_key", contacts.c.workspace_id, contacts.c.phone_number, unique=True)

# One row per landed batch, written in the batch's own transaction.
import_batches = sa.Table(
    "contact_import_batches",
    metadata_obj,
    sa.Column("import_id", sa.Text(), primary_key=True),
    sa.Column("batch_index", sa.Integer(), primary_key=True),
    sa.Column("workspace_id", sa.Text(), nullable=False),
    sa.Column("import_tag", sa.Text(), nullable=False),
    sa.Column("rows", sa.Integer(), nullable=False),
    sa.Column("imported", sa.Integer(), nullable=False),
    sa.Column("skipped", sa.Integer(), nullable=False),
    sa.Column("updated", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("conflict_rows", sa.JSON(), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)

# The phones an import planned to insert, recorded once before its first batch. A re-execution
# plans exactly these again (see ContactsStore.resume_plan), so batch i means the same rows in
# every attempt and a batch recorded as landed never hides rows that did not land.
import_plans = sa.Table(
    "contact_import_plans",
    metadata_obj,
    sa.Column("import_id", sa.Text(), primary_key=True),
    sa.Column("phones", sa.Text(), nullable=False),  # newline-separated E.164 phones
    sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
)


# The ledger: one row per import (one uploaded file version), the user's unit. Written when a run
# claims its files, when an import's rows are planned and when it ends; history, undo, status and
# the failure sensor read it (see ledger.py).
contact_imports = sa.Table(
    "contact_imports",
    metadata_obj,
    sa.Column("import_id", sa.Text(), primary_key=True),  # <root run id>:<file key>
    sa.Column("root_run_id", sa.Text(), nullable=False),
    sa.Column("run_id", sa.Text(), nullable=False),  # the latest run that worked on it
    sa.Column("position", sa.Integer(), nullable=False),  # upload order within the run
    sa.Column("workspace_id", sa.Text(), nullable=False),
    sa.Column("file_key", sa.Text(), nullable=False),
    sa.Column("file_version", sa.Text(), nullable=False, server_default=sa.text("''")),
    sa.Column("source", sa.Text(), nullable=False),  # the name shown to people (a URL without its query)
    sa.Column("import_tag", sa.Text(), nullable=False),
    sa.Column("origin", sa.Text(), nullable=False),
    sa.Column("user_id", sa.Text()),
    sa.Column("status", sa.Text(), nullable=False),
    sa.Column("error", sa.Text()),
    sa.Column("total", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("imported", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("updated", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("skipped", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("failed", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("planned_batches", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("skipped_by_reason", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("failed_by_reason", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),
    sa.Column("errors", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
    sa.Column("rejects_file", sa.Text()),
    sa.Column("cleanup", sa.Text()),
    sa.Column("details", sa.JSON(), nullable=False, server_default=sa.text("'{}'")),  # encoding, delimiter, timings
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("undone_at", sa.DateTime(timezone=True)),
    sa.Column("undone_count", sa.Integer()),
)
sa.Index("contact_imports_workspace_tag", contact_imports.c.workspace_id, contact_imports.c.import_tag)
sa.Index("contact_imports_root_run", contact_imports.c.root_run_id)


def default_database_url() -> str:
    """``CONTACTS_DATABASE_URL`` or the local SQLite file under ``.contact_import/``."""
    return os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{DEFAULT_DATABASE_PATH}"


def normalize_url(url: str) -> str:
    """Make plain ``postgres(ql)://`` URLs use psycopg 3 explicitly."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """The URL without its password, for messages and metadata."""
    return sa.engine.make_url(normalize_url(url)).render_as_string(hide_password=True)
