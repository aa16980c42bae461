"""Opening and closing the imports of one run: claim them in the ledger, read each file on its
own, and at the end write each import's rejects file, clean up its source and record its outcome.

A file-level error (bad options, an unreadable or missing file, no phone column) ends that import
only: it is recorded ``failed`` with its reason and the run goes on with its other files. Errors
of the infrastructure (bucket or database unreachable) are raised, so the run fails and is retried.
No Dagster here: the assets call these with their resources.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.importing.options import FileOptions, ResolvedOptions, file_key, resolve_options
from contact_import_pipeline.importing.rejects import rejects_csv
from contact_import_pipeline.importing.stages import DedupedImport, RawImport, SettledImport, Summary
from contact_import_pipeline.keys import UnsafeKeyError, parse_import_key
from contact_import_pipeline.reading.csv_file import read_csv_loaded
from contact_import_pipeline.settings import IO_THREADS, Limits
from contact_import_pipeline.storage.bucket import ContactBucket
from contact_import_pipeline.storage.ledger import ImportClaim, ImportResult, Ledger
from contact_import_pipeline.storage.sources import read_source, source_name
from contact_import_pipeline.vocabulary import Cleanup, ImportStatus, default_import_tag

T = TypeVar("T")
R = TypeVar("R")


def import_id_for(root_run_id: str, key: str) -> str:
    """The id an import's batches and ledger row are recorded under, shared by a run and all its
    re-executions (the root run id, not the run id: a per-run id would make the summary miss every
    batch a re-execution inserted, or count the crashed run's rows as skipped)."""
    return f"{root_run_id}:{key}"


@dataclass(frozen=True)
class _Opened:
    position: int
    import_id: str
    key: str
    options: ResolvedOptions | None
    error: str | None


def in_threads(work: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``work`` over ``items`` in order, on IO_THREADS threads when there are several: bucket
    requests of a run's files overlap instead of queueing (S3 answers each in tens of ms)."""
    if len(items) < 2:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
        return list(pool.map(work, items))


def _identify(files: Sequence[FileOptions], root_run_id: str) -> list[_Opened]:
    """Each file's key and import id; a file without a usable key, or listed twice, fails here."""
    seen: set[str] = set()
    out = []
    for position, config in enumerate(files):
        try:
            key = file_key(config)
        except OptionsError as exc:
            out.append(
                _Opened(
                    position, import_id_for(root_run_id, f"#{position + 1}"), f"(file {position + 1})", None, str(exc)
                )
            )
            continue
        import_id = import_id_for(root_run_id, key)
        if key in seen:
            out.append(
                _Opened(position, f"{import_id}#{position + 1}", key, None, f"{key}: listed more than once in this run")
            )
            continue
        seen.add(key)
        out.append(_Opened(position, import_id, key, None, None))
    return out


def _resolve(item: _Opened, config: FileOptions, bucket: ContactBucket, run_started: datetime) -> _Opened:
    """Read the upload's own options and resolve the file's options; a user error becomes its failure."""
    if item.error is not None:
        return item
    try:
        upload_options = (
            bucket.read_options(item.key) if not config.source.strip() and _in_bucket(bucket, item.key) else {}
        )
        return replace(item, options=resolve_options(config, upload_options, run_started))
    except (OptionsError, ImportFileError) as exc:
        return replace(item, error=str(exc))


def _in_bucket(bucket: ContactBucket, key: str) -> bool:
    try:
        return bucket.exists(key)
    except UnsafeKeyError:
        return False  # resolve_options refuses the key with the reason


def _workspace_of(key: str) -> str:
    try:
        return parse_import_key(key).workspace_id
    except UnsafeKeyError:
        return ""


def open_imports(
    files: Sequence[FileOptions],
    *,
    run_id: str,
    root_run_id: str,
    run_started: datetime,
    origin: str,
    bucket: ContactBucket,
    ledger: Ledger | None,
    limits: Limits,
) -> list[RawImport | SettledImport]:
    """Claim every file of the run in the ledger and read those that still need work, in upload order.

    Without a ledger (a dry run) nothing is claimed or recorded: every file is read afresh.
    """
    identified = _identify(files, root_run_id)
    opened = in_threads(lambda item: _resolve(item, files[item.position], bucket, run_started), identified)
    if ledger is None:
        return _read_all(
            [
                (o, replace(o.options, import_tag=o.options.import_tag or default_import_tag(o.options.tag_time)))
                for o in opened
                if o.options is not None
            ],
            [
                SettledImport(o.import_id, o.position, o.key, _workspace_of(o.key), ImportStatus.FAILED, o.error)
                for o in opened
                if o.options is None
            ],
            bucket,
            None,
            limits,
            planned_before=set(),
        )
    claims = [
        ImportClaim(
            import_id=o.import_id,
            position=o.position,
            key=o.key,
            version=o.options.version if o.options else files[o.position].version,
            workspace_id=o.options.workspace_id if o.options else _workspace_of(o.key),
            source=source_name(o.options.source, o.key) if o.options else o.key,
            import_tag=o.options.import_tag if o.options else "",
            tag_time=o.options.tag_time if o.options else run_started,
            origin=origin,
            user_id=o.options.user_id if o.options else None,
        )
        for o in opened
    ]
    entries = ledger.claim(claims, run_id=run_id, root_run_id=root_run_id)
    planned_before = set(ledger.store.recorded_plans([o.import_id for o in opened]))
    out: list[RawImport | SettledImport | None] = [None] * len(opened)
    to_read: list[tuple[_Opened, ResolvedOptions]] = []
    for item in opened:
        entry = entries[item.import_id]
        if ImportStatus(entry.status).final:  # done by an earlier attempt: nothing to redo
            out[item.position] = SettledImport(
                item.import_id, item.position, item.key, entry.workspace_id, entry.status, entry.error, item.options
            )
        elif item.import_id in planned_before and item.options is None:
            raise ImportInterrupted(f"{item.key}: {item.error} (an earlier attempt of this run had read it)")
        elif item.options is None:
            out[item.position] = fail(
                ledger, item.import_id, item.position, item.key, entry.workspace_id, item.error or "invalid options"
            )
        else:
            to_read.append((item, replace(item.options, import_tag=entry.import_tag)))
    settled = [item for item in out if item is not None]
    return _read_all(to_read, settled, bucket, ledger, limits, planned_before)


def _read_all(
    to_read: list[tuple[_Opened, ResolvedOptions]],
    settled: list[RawImport | SettledImport],
    bucket: ContactBucket,
    ledger: Ledger | None,
    limits: Limits,
    planned_before: set[str],
) -> list[RawImport | SettledImport]:
    """Read the files that need work and return them with the ``settled`` ones, in upload order."""
    out: list[RawImport | SettledImport] = list(settled)
    if len(to_read) == 1:  # one (possibly large) file: its bytes are dropped as soon as they are decoded
        item, options = to_read[0]
        loads: list[Callable[[], bytes]] = [
            lambda: read_source(options.source, options.key, bucket, limits.max_file_bytes)
        ]
    else:
        fetched = in_threads(lambda pair: _fetch(pair[1], bucket, limits), to_read)
        loads = [functools.partial(_bytes_or_raise, data) for data in fetched]
    for (item, options), load in zip(to_read, loads, strict=True):
        out.append(_read(item, options, load, ledger, limits, interrupt=item.import_id in planned_before))
    return sorted(out, key=lambda item: item.position)


class ImportInterrupted(RuntimeError):
    """A file an earlier attempt of this run had read (and may have partly inserted) cannot be read
    now (a URL that expired or answers 503, an object deleted meanwhile). Failing the import would
    hide the rows that landed, so the run fails instead and is retried (or re-executed by hand)."""


def _fetch(options: ResolvedOptions, bucket: ContactBucket, limits: Limits) -> bytes | Exception:
    """A file's bytes, or the user error that stopped them (raised again where the file is read)."""
    try:
        return read_source(options.source, options.key, bucket, limits.max_file_bytes)
    except (ImportFileError, OptionsError) as exc:
        return exc


def _bytes_or_raise(data: bytes | Exception) -> bytes:
    if isinstance(data, Exception):
        raise data
    return data


def _read(
    item: _Opened,
    options: ResolvedOptions,
    load: Callable[[], bytes],
    ledger: Ledger | None,
    limits: Limits,
    interrupt: bool,
) -> RawImport | SettledImport:
    started = time.perf_counter()
    name = source_name(options.source, options.key)
    try:
        table = read_csv_loaded(load, name, limits)
    except (ImportFileError, OptionsError) as exc:
        if interrupt:
            raise ImportInterrupted(f"{exc} (an earlier attempt of this run had read it)") from None
        return fail(ledger, item.import_id, item.position, options.key, options.workspace_id, str(exc))
    return RawImport(
        import_id=item.import_id,
        position=item.position,
        options=options,
        source=name,
        table=table,
        timings={"reading": time.perf_counter() - started},
    )


def fail(
    ledger: Ledger | None, import_id: str, position: int, key: str, workspace_id: str, error: str
) -> SettledImport:
    """Record a file-level failure (unless a dry run, without a ledger) and return the import as settled."""
    if ledger is not None:
        ledger.fail(import_id, error)
    return SettledImport(import_id, position, key, workspace_id, ImportStatus.FAILED, error)


# What the ledger keeps of a summary besides its counts (``contact_imports.details``).
LEDGER_DETAILS = ("encoding", "delimiter", "batches", "timings", "mapping", "diagnoses", "multi_phone_rows")


def result_of(summary: Summary, deduped: DedupedImport, bucket: ContactBucket) -> ImportResult:
    """Write the import's rejects file and return what the ledger records when the run completes.

    The source is cleaned up only after the outcome is recorded (``clean_up_completed``): a run that
    stops in between still finds the file, and the next attempt finishes the cleanup.
    """
    described = summary.as_dict()
    rejects_file = None
    if summary.rejects:
        rejects_file = bucket.write_bytes(
            parse_import_key(deduped.options.key).rejects_key, rejects_csv(deduped.header, summary.rejects)
        )
    return ImportResult(
        import_id=summary.import_id,
        total=summary.total,
        imported=summary.imported,
        updated=summary.updated,
        skipped=summary.skipped,
        failed=summary.failed,
        skipped_by_reason=summary.skipped_by_reason,
        failed_by_reason=summary.failed_by_reason,
        errors=summary.errors,
        rejects_file=rejects_file,
        details={key: described[key] for key in LEDGER_DETAILS},
    )


def clean_up_completed(
    pending: Sequence[tuple[str, ResolvedOptions]], bucket: ContactBucket, ledger: Ledger, warn: Callable[[str], None]
) -> None:
    """Archive, delete or keep the sources of completed imports, and record what was done."""
    outcomes = in_threads(lambda pair: (pair[0], clean_up(bucket, pair[1], warn)), pending)
    ledger.cleaned_up(dict(outcomes))


def clean_up(bucket: ContactBucket, options: ResolvedOptions, warn: Callable[[str], None]) -> str:
    """Archive, delete or keep the source; a failure here is reported but does not undo the import."""
    if not options.reads_bucket or options.cleanup == Cleanup.KEEP:
        return "kept"
    try:
        current = bucket.version(options.key)
        if options.version and current not in (None, options.version):
            return "kept: a newer upload replaced it (the sensor imports that one)"
        if options.cleanup == Cleanup.DELETE:
            bucket.delete(options.key)
            return "deleted"
        return "archived to " + bucket.archive(options.key)
    except Exception as exc:  # noqa: BLE001 - storage errors of any backend; the import itself succeeded
        warn(f"could not clean up {options.key}: {exc}")
        return f"cleanup failed: {exc}"
