"""Where uploaded CSV files live: a local folder or an S3-compatible bucket, behind one interface.

The sensor lists uploads, assets read them and their options, write rejects files and archive the
source. Both backends share the key layout of ``keys.py`` and every operation built on the small
primitives each backend implements, so local and S3 behave the same way.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from contact_import_pipeline.errors import CsvFileError, ImportFileError, OptionsError
from contact_import_pipeline.keys import OPTIONS_SUFFIX, check_safe_key, parse_import_key
from contact_import_pipeline.settings import MAX_FILE_BYTES_ENV, MAX_OPTIONS_BYTES

DEFAULT_BUCKET_DIR = ".contact_import/bucket"
# Local writes go to a hidden temp file first; listings skip these names.
TEMP_PREFIX = ".contact-import-tmp-"
# boto3 retries a refused connection with backoff; 3 attempts keep a sensor tick against a dead
# endpoint to a few seconds instead of the default ~30.
S3_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class BucketObject:
    """One listed object. ``version`` changes whenever the content may have changed."""

    key: str
    version: str
    last_modified: float
    size: int


class BucketError(Exception):
    """The bucket could not be reached or refused the request; names the bucket and the cause."""


class MissingObjectError(ImportFileError):
    """The file is not in the bucket (deleted, or already archived by an earlier run)."""


class ContactBucket(ABC):
    """Storage for uploads, options sidecars, rejects files and archived sources."""

    # Whether a half-written object can be listed: true for a folder (a copy in progress is a
    # growing file), false for S3 (an object appears only once its upload completes).
    def shows_partial_uploads(self) -> bool:
        return False

    @abstractmethod
    def list_objects(self, prefix: str = "") -> Iterator[BucketObject]:
        """Every object whose key starts with ``prefix``, however many there are."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` (replacing it whole) and return its locator."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def locator(self, key: str) -> str:
        """Where a person finds the object: a local path or ``s3://bucket/key``."""

    @abstractmethod
    def version(self, key: str) -> str | None:
        """The object's current version as listings report it, None when it does not exist."""

    @abstractmethod
    def _size(self, key: str) -> int | None:
        """Size in bytes, or None when the object does not exist."""

    @abstractmethod
    def _read(self, key: str, limit: int) -> bytes:
        """At most ``limit`` bytes from the start of an existing object."""

    @abstractmethod
    def _move(self, src: str, dst: str) -> bool:
        """Move ``src`` to ``dst`` (replacing it); False when ``src`` does not exist."""

    @abstractmethod
    def _remove(self, key: str) -> None:
        """Delete ``key``; a missing object is not an error."""

    def _user_metadata(self, key: str) -> dict[str, str]:
        """Options attached to the object itself (S3 user metadata); none for a folder."""
        return {}

    def read_bytes(self, key: str, max_bytes: int) -> bytes:
        """The whole object, refusing it before reading when it is over ``max_bytes``."""
        size = self._size(key)
        if size is None:
            raise MissingObjectError(f"{key}: not found in the bucket (deleted or already archived)")
        if size > max_bytes:
            raise _too_big(key, size, max_bytes)
        data = self._read(key, max_bytes + 1)
        if len(data) > max_bytes:  # it grew between the size check and the read
            raise _too_big(key, len(data), max_bytes)
        return data

    def read_options(self, key: str) -> dict[str, Any]:
        """Options for an upload: S3 user metadata overridden by the ``<key>.json`` sidecar."""
        options: dict[str, Any] = {name.replace("-", "_"): value for name, value in self._user_metadata(key).items()}
        sidecar = key + OPTIONS_SUFFIX
        size = self._size(sidecar)
        if size is None:
            return options
        if size > MAX_OPTIONS_BYTES:
            raise OptionsError(f"{sidecar}: options file is {size} bytes, over {MAX_OPTIONS_BYTES}")
        try:
            parsed = json.loads(self._read(sidecar, MAX_OPTIONS_BYTES))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise OptionsError(f"{sidecar}: options file is not valid JSON ({exc})") from exc
        if not isinstance(parsed, dict):
            raise OptionsError(f"{sidecar}: options file must hold a JSON object, not {parsed!r:.40}")
        return {**options, **parsed}

    def archive(self, key: str) -> str:
        """Move an upload and its sidecar to ``processed/``; safe to call again after a retry."""
        import_key = parse_import_key(key)
        moved = self._move(import_key.key, import_key.processed_key)
        self._move(import_key.options_key, import_key.processed_key + OPTIONS_SUFFIX)
        if not moved and not self.exists(import_key.processed_key):
            raise MissingObjectError(f"{key}: not found in the bucket, nor archived")
        return import_key.processed_key

    def delete(self, key: str) -> None:
        """Delete an object and its options sidecar."""
        self._remove(key)
        self._remove(key + OPTIONS_SUFFIX)


def _too_big(key: str, size: int, max_bytes: int) -> CsvFileError:
    return CsvFileError(
        f"{key}: file is {size} bytes, over the limit of {max_bytes} bytes; split it into "
        f"smaller files or raise {MAX_FILE_BYTES_ENV}"
    )


def _local_version(stat: os.stat_result) -> str:
    """A local file's version: it changes whenever the file is rewritten (mtime in ns, and size)."""
    return f"{stat.st_mtime_ns}-{stat.st_size}"


@dataclass(frozen=True)
class LocalFolderBucket(ContactBucket):
    """A folder standing in for the bucket: keys are paths below ``root``."""

    root: str = DEFAULT_BUCKET_DIR

    def shows_partial_uploads(self) -> bool:
        return True

    def _path(self, key: str) -> Path:
        """The file for ``key``, refusing keys or symlinks that would lead outside ``root``."""
        path = Path(self.root, *check_safe_key(key).split("/"))
        root = os.path.realpath(self.root)
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise BucketError(f"{key}: resolves outside the bucket folder {self.root}")
        return path

    def list_objects(self, prefix: str = "") -> Iterator[BucketObject]:
        base = Path(self.root)
        for folder, subfolders, files in os.walk(base):
            subfolders.sort()
            for name in sorted(files):
                if name.startswith(TEMP_PREFIX):
                    continue
                path = Path(folder, name)
                key = path.relative_to(base).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:  # moved away while listing
                    continue
                yield BucketObject(
                    key=key,
                    version=_local_version(stat),
                    last_modified=stat.st_mtime,
                    size=stat.st_size,
                )

    def write_bytes(self, key: str, data: bytes) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
        return str(path)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def locator(self, key: str) -> str:
        return str(self._path(key))

    def version(self, key: str) -> str | None:
        path = self._path(key)
        if not path.is_file():
            return None
        stat = path.stat()
        return _local_version(stat)

    def _size(self, key: str) -> int | None:
        path = self._path(key)
        return path.stat().st_size if path.is_file() else None

    def _read(self, key: str, limit: int) -> bytes:
        with self._path(key).open("rb") as handle:
            return handle.read(limit)

    def _move(self, src: str, dst: str) -> bool:
        source, target = self._path(src), self._path(dst)
        if not source.is_file():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return True

    def _remove(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


@dataclass(frozen=True)
class S3Bucket(ContactBucket):
    """An S3 bucket, or any S3-compatible store (MinIO, Supabase Storage, moto) via endpoint_url."""

    bucket: str
    prefix: str = ""  # key prefix inside the bucket, if shared
    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None

    @property
    def client(self) -> Any:
        """A boto3 client shared by every resource instance with the same settings."""
        return _s3_client(self.endpoint_url, self.region_name, self.aws_access_key_id, self.aws_secret_access_key)

    def _full(self, key: str) -> str:
        prefix = self.prefix.strip("/")
        return f"{prefix}/{key}" if prefix else key

    def _where(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix.strip('/')}"
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    def list_objects(self, prefix: str = "") -> Iterator[BucketObject]:
        strip = len(self._full(""))
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._full(prefix))
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield BucketObject(
                        key=item["Key"][strip:],
                        version=item["ETag"].strip('"'),
                        last_modified=item["LastModified"].timestamp(),
                        size=item["Size"],
                    )
        except (BotoCoreError, ClientError) as exc:
            raise BucketError(f"cannot list {self._where()}: {exc}") from exc

    def write_bytes(self, key: str, data: bytes) -> str:
        self._call("put_object", key, Body=data)
        return self.locator(key)

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def locator(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def version(self, key: str) -> str | None:
        head = self._head(key)
        return None if head is None else str(head["ETag"]).strip('"')

    def _call(self, operation: str, key: str, **kwargs: Any) -> Any:
        """One client call on ``key``, with failures reported as BucketError naming the object."""
        try:
            return getattr(self.client, operation)(Bucket=self.bucket, Key=self._full(key), **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise BucketError(f"{operation} {self.locator(key)} failed: {exc}") from exc

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise BucketError(f"head_object {self.locator(key)} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise BucketError(f"head_object {self.locator(key)} failed: {exc}") from exc

    def _size(self, key: str) -> int | None:
        head = self._head(key)
        return None if head is None else int(head["ContentLength"])

    def _user_metadata(self, key: str) -> dict[str, str]:
        head = self._head(key)
        return {} if head is None else dict(head.get("Metadata", {}))

    def _read(self, key: str, limit: int) -> bytes:
        body = self._call("get_object", key)["Body"]
        try:
            return body.read(limit)
        finally:
            body.close()

    def _move(self, src: str, dst: str) -> bool:
        if self._head(src) is None:
            return False
        source = {"Bucket": self.bucket, "Key": self._full(src)}
        self._call("copy_object", dst, CopySource=source)
        self._call("delete_object", src)
        return True

    def _remove(self, key: str) -> None:
        self._call("delete_object", key)  # S3 deletes of missing keys succeed

    def upload_file(self, key: str, path: Path) -> None:
        """Store a local file under ``key`` (multipart for large files, never whole in memory)."""
        try:
            self.client.upload_file(str(path), self.bucket, self._full(key))
        except (BotoCoreError, ClientError) as exc:
            raise BucketError(f"upload to {self.locator(key)} failed: {exc}") from exc

    def download_file(self, key: str, path: Path) -> None:
        """Copy the object ``key`` into a local file."""
        try:
            self.client.download_file(self.bucket, self._full(key), str(path))
        except (BotoCoreError, ClientError) as exc:
            raise BucketError(f"download of {self.locator(key)} failed: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``; returns how many."""
        keys = [obj.key for obj in self.list_objects(prefix)]
        for start in range(0, len(keys), 1000):  # S3 deletes at most 1,000 keys per request
            chunk = [{"Key": self._full(key)} for key in keys[start : start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
            except (BotoCoreError, ClientError) as exc:
                raise BucketError(f"cannot delete under {self.locator(prefix)}: {exc}") from exc
        return len(keys)


@functools.lru_cache(maxsize=16)
def _s3_client(
    endpoint_url: str | None,
    region_name: str | None,
    aws_access_key_id: str | None,
    aws_secret_access_key: str | None,
) -> Any:
    """Building a client takes ~0.5 s (it loads the S3 service model), and Dagster builds the
    resource anew for every sensor tick and step, so clients are kept per process; they are
    thread-safe. Unset credentials and region fall back to boto3's own lookup."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region_name,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        config=Config(retries={"max_attempts": S3_MAX_ATTEMPTS, "mode": "standard"}),
    )
