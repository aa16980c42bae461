"""Where an import's bytes come from: its bucket object, an http(s) URL, or (CLI only) a local file."""

from __future__ import annotations

import os
from pathlib import Path

from contact_import_pipeline.errors import CsvFileError, OptionsError
from contact_import_pipeline.keys import parse_import_key
from contact_import_pipeline.settings import URL_TIMEOUT_SECONDS
from contact_import_pipeline.storage.bucket import ContactBucket
from contact_import_pipeline.storage.url_source import allow_private_urls_from_env, fetch_url

# Set only by the in-process CLI: a run launched over GraphQL must never read the server's files.
ALLOW_LOCAL_SOURCES_ENV = "CONTACT_IMPORT_ALLOW_LOCAL_SOURCES"


def source_name(source: str, key: str) -> str:
    """The name used for a file in messages: its URL without the query (which may hold secrets),
    its local file name, or its bucket key."""
    if source.startswith(("http://", "https://")):
        return source.split("?", 1)[0]
    return Path(source).name if source else key


def read_source(source: str, key: str, bucket: ContactBucket, max_bytes: int) -> bytes:
    """The file's bytes, from its URL, its local path (CLI only) or, without a source, its bucket object."""
    if source.startswith(("http://", "https://")):
        return fetch_url(
            source, max_bytes=max_bytes, timeout=URL_TIMEOUT_SECONDS, allow_private=allow_private_urls_from_env()
        )
    if source:
        if "://" in source:
            raise OptionsError(f"source {source.split('?', 1)[0]!r}: only http:// and https:// URLs are accepted")
        if os.environ.get(ALLOW_LOCAL_SOURCES_ENV) != "1":
            raise OptionsError("local file sources are only accepted by `contact-import import`")
        return _read_local(Path(source), max_bytes)
    return _read_bucket(key, bucket, max_bytes)


def _read_local(path: Path, max_bytes: int) -> bytes:
    if not path.is_file():
        raise CsvFileError(f"{path}: file not found")
    size = path.stat().st_size
    if size > max_bytes:
        raise CsvFileError(f"{path}: file is {size} bytes, over the limit of {max_bytes} bytes")
    return path.read_bytes()


def _read_bucket(key: str, bucket: ContactBucket, max_bytes: int) -> bytes:
    """Read the upload, or its archived copy when a finished import is re-executed."""
    if bucket.exists(key):
        return bucket.read_bytes(key, max_bytes)
    processed = parse_import_key(key).processed_key
    if bucket.exists(processed):
        return bucket.read_bytes(processed, max_bytes)
    raise CsvFileError(f"{key}: file not found in the bucket ({bucket.locator(key)})")
