"""Dagster resources for the contacts database (the bucket resources live in bucket.py)."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from contact_import_pipeline.contacts_store import DATABASE_URL_ENV, ContactsStore, default_database_url


class ContactsDatabase(dg.ConfigurableResource):
    """The database holding the ``contacts`` table."""

    url: str = Field(
        default="",
        description=f"SQLAlchemy URL of the contacts database. Default: ${DATABASE_URL_ENV}, else the local "
        "SQLite file .contact_import/contacts.db. PostgreSQL URLs use psycopg 3.",
    )

    def store(self) -> ContactsStore:
        return ContactsStore(self.url or default_database_url())
