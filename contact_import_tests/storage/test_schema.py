"""storage.schema: database URLs as the store opens them and as messages show them."""

from __future__ import annotations

from contact_import_pipeline.storage.schema import normalize_url, redact_url


def test_urls_are_normalized_to_psycopg3_and_redacted() -> None:
    assert normalize_url("postgresql://u:secret@h/db") == "postgresql+psycopg://u:secret@h/db"
    assert normalize_url("postgres://h/db") == "postgresql+psycopg://h/db"
    assert "secret" not in redact_url("postgresql://u:secret@h/db")
