"""``contact-import trigger``: check imports locally, upload local files, launch one run over GraphQL.

This replaces the reference design's ``POST /api/import/trigger`` route: the run belongs to the
daemon, so closing the caller never stops it. Nothing is uploaded or launched before every input
is valid and the webserver answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contact_import_pipeline.app.graphql import DagsterApi
from contact_import_pipeline.app.runner import ImportRequest
from contact_import_pipeline.defs import launch
from contact_import_pipeline.defs.resources import bucket_from_env
from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.importing.options import FileSpec, check_batch_size, is_url, resolve_options
from contact_import_pipeline.keys import IMPORTS_FOLDER, parse_import_key, validate_workspace_id
from contact_import_pipeline.settings import SensorSettings
from contact_import_pipeline.storage.bucket import BucketObject, ContactBucket, MissingObjectError
from contact_import_pipeline.vocabulary import Origin


@dataclass(frozen=True)
class TriggerResult:
    """What a caller needs after launching: the run, where to watch it, and the keys of its files."""

    run_id: str
    run_url: str
    keys: list[str]


def trigger_import(
    sources: Sequence[str],
    workspace_id: str,
    *,
    tag: str = "",
    board_phone: str = "",
    region: str = "",
    batch_size: int | None = None,
    dagster_url: str | None = None,
    bucket: ContactBucket | None = None,
) -> TriggerResult:
    """Validate the imports locally, then launch one run for all of them over GraphQL.

    Each source is a bucket key ``<workspace>/imports/<name>.csv`` (it must be in the bucket), an
    http(s) URL (read by the run), or a local file (uploaded to ``<workspace>/imports/`` first).
    Raises OptionsError or ImportFileError for bad input and DagsterApiError subclasses for the
    webserver; nothing is uploaded or launched before every input is valid and the webserver answers.
    The run executes in one process unless a file is large or a URL (its size is unknown).
    """
    validate_workspace_id(workspace_id)
    sources = [s.strip() for s in ([sources] if isinstance(sources, str) else sources) if s.strip()]
    if not sources:
        raise OptionsError("a source is required: a local CSV file, an http(s) URL or a bucket key")
    if batch_size is not None:
        check_batch_size(batch_size)
    bucket = bucket or bucket_from_env()
    planned = [_check_source(source, workspace_id, tag, board_phone, region, bucket) for source in sources]
    keys = [entry["key"] for entry, _, _ in planned]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise OptionsError(
            f"several sources would import as the same key {', '.join(repeated)}: rename one, or trigger them separately"
        )

    api = DagsterApi(dagster_url)
    api.check_location()
    settings = SensorSettings.from_env()
    entries, sizes = [], []
    for entry, local_file, listed in planned:
        if local_file is not None:
            listed = _upload(bucket, local_file, entry["key"])
            entry = dict(entry, key=listed.key, source="")
        if listed is not None:
            entry = dict(entry, version=listed.version, uploaded_at=listed.last_modified)
        entries.append(entry)
        sizes.append(listed.size if listed is not None else None)
    run_config = launch.run_config(entries, in_process=settings.in_one_process(sizes), batch_size=batch_size)
    keys = [entry["key"] for entry in entries]
    run_id = api.launch_import(run_config, launch.run_tags(keys, Origin.GRAPHQL))
    return TriggerResult(run_id=run_id, run_url=api.run_url(run_id), keys=keys)


def _check_source(
    source: str, workspace_id: str, tag: str, board_phone: str, region: str, bucket: ContactBucket
) -> tuple[dict[str, Any], Path | None, BucketObject | None]:
    """(run-config entry, local file to upload, the bucket object when already there); raises for bad input."""
    request = ImportRequest(
        source=source, workspace_id=workspace_id, import_tag=tag, board_phone_number=board_phone, default_region=region
    )
    key, run_source = request.key_and_source()
    entry = request.file_entry(key, run_source)
    # The same checks the run makes, so a bad tag, region or board phone fails here, not in a run.
    resolve_options(FileSpec(**entry), {}, datetime.now(UTC))
    if is_url(run_source):
        return entry, None, None
    if run_source:
        path = Path(run_source)
        if not path.is_file():
            raise ImportFileError(f"{source}: file not found (give a local CSV file, an http(s) URL or a bucket key)")
        return entry, path, None
    listed = _listed(bucket, key)
    if listed is None:
        raise MissingObjectError(f"{key}: not found in the bucket ({bucket.locator(key)})")
    return entry, None, listed


def _listed(bucket: ContactBucket, key: str) -> BucketObject | None:
    for obj in bucket.list_objects(key):
        if obj.key == key:
            return obj
    return None


def _upload(bucket: ContactBucket, path: Path, key: str) -> BucketObject:
    """Put the file at ``key``, or beside it with a time suffix when ``key`` holds other content.

    Returns the stored object; its version goes into the run config, which tells the new-file
    sensor that the upload was already launched.
    """
    data = path.read_bytes()
    if bucket.exists(key) and not _same_content(bucket, key, data):
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        import_key = parse_import_key(key)
        key = f"{import_key.workspace_id}/{IMPORTS_FOLDER}/{import_key.name[:-4]}-{stamp}.csv"
    if not bucket.exists(key):
        bucket.write_bytes(key, data)
    listed = _listed(bucket, key)
    if listed is None:
        raise ImportFileError(f"{key}: uploaded, but the bucket does not list it")
    return listed


def _same_content(bucket: ContactBucket, key: str, data: bytes) -> bool:
    try:
        stored = bucket.read_bytes(key, len(data))
    except ImportFileError:  # larger than our file, or gone meanwhile
        return False
    return stored == data
