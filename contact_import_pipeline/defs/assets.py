"""The four assets of a run of imports. Each calls plain functions (``stages``, ``imports``).

A run carries one or more files (run config ``ops.raw_csv.config.files``). Every stage works on all
of them; a file that fails as a file drops out with its reason and the others go on.
"""

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, NoReturn

import dagster as dg

from contact_import_pipeline.defs import checks, progress
from contact_import_pipeline.defs.config import ImportRunConfig
from contact_import_pipeline.defs.resources import BucketResource, ContactsDatabase
from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.importing import diagnoses, preview, stages
from contact_import_pipeline.importing import lifecycle as imports
from contact_import_pipeline.importing.options import check_batch_size
from contact_import_pipeline.model import ImportProgress
from contact_import_pipeline.settings import CONTACTS_DB_POOL, FIRST_ERRORS, Limits, RunRetrySettings
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger, LedgerEntry, PlannedImport
from contact_import_pipeline.vocabulary import (
    DRY_RUN_TAG,
    FILES_TAG,
    MAX_RETRIES_TAG,
    ORIGIN_TAG,
    RETRY_NUMBER_TAG,
    SENSOR_NAME_TAG,
    ImportStatus,
    Origin,
    Reason,
    RunStatus,
    file_tag,
    workspace_tag,
)

GROUP = "contact_import"
INSERT_STEP_TAG = {"contact_import/step": "insert"}
LOGGED_FILES = 10  # files of a run described one by one in its log
# Steps that read each stage's output, when more than one (a run in one process drops an output
# once they have all finished): plan_batches and summarize read the deduplicated imports.
OUTPUT_READERS = {"deduped_contacts": 2}


def _root(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> str:
    """The root run id: a run and all its re-executions share it (and so share imports and batches)."""
    return context.run.root_run_id or context.run.run_id


def _run_started(context: dg.AssetExecutionContext) -> datetime:
    """When the first run of this run family was created (dates default tags of files without a time)."""
    record = context.instance.get_run_record_by_id(_root(context))
    stamp = record.create_timestamp if record is not None else datetime.now(UTC)
    return stamp.astimezone(UTC)


def _origin(tags: dict[str, str]) -> str:
    """cli, sensor and graphql tag their runs; a bare Launchpad launch carries none of our tags."""
    if ORIGIN_TAG in tags:
        return tags[ORIGIN_TAG]
    return str(Origin.SENSOR if SENSOR_NAME_TAG in tags else Origin.LAUNCHPAD)


def _wait_before_retry(context: dg.AssetExecutionContext) -> None:
    """Back off before an automatic retry works: whatever failed the last attempt (a database or
    bucket outage) gets time to come back. Dagster's run retries start the next run at once."""
    retry = int(context.run.tags.get(RETRY_NUMBER_TAG, "0") or 0)
    if retry:
        seconds = RunRetrySettings.from_env().delay_seconds(retry)
        context.log.info(f"automatic retry {retry}: waiting {seconds:.0f}s before starting")
        time.sleep(seconds)


def _identity_tags(context: dg.AssetExecutionContext, stage: stages.RunStage) -> None:
    """Tag the run with its files and workspaces (runs launched from the Launchpad lack them)."""
    wanted: dict[str, str] = {FILES_TAG: str(len(stage.imports))} | ({DRY_RUN_TAG: "true"} if stage.dry_run else {})
    for item in stage.imports:
        key = item.options.key if isinstance(item, stages.RawImport) else item.key
        workspace_id = item.options.workspace_id if isinstance(item, stages.RawImport) else item.workspace_id
        wanted[file_tag(key)] = key
        if workspace_id:
            wanted[workspace_tag(workspace_id)] = workspace_id
    if ORIGIN_TAG not in context.run.tags:
        wanted[ORIGIN_TAG] = _origin(dict(context.run.tags))
    missing = {k: v for k, v in wanted.items() if context.run.tags.get(k) != v}
    if missing:
        context.instance.add_run_tags(context.run.run_id, missing)


def _ledger(contacts_db: ContactsDatabase, dry_run: bool) -> tuple[ContactsStore, Ledger]:
    """The contacts store and its ledger; a dry run's store is read-only (it writes nothing)."""
    store = contacts_db.store(read_only=dry_run)
    return store, Ledger(store)


@dg.asset(group_name=GROUP, kinds={"csv"})
def raw_csv(
    context: dg.AssetExecutionContext, config: ImportRunConfig, bucket: BucketResource, contacts_db: ContactsDatabase
) -> dg.Output:
    """The run's uploaded CSV files, each decoded (encoding and delimiter detected) into rows of text."""
    # A retry or re-execution starts with its parent's tags: start its progress afresh.
    progress.report(
        context.instance,
        context.run.run_id,
        status=RunStatus.INITIALIZING,
        error="",
        errors=[],
        **dict.fromkeys(progress.COUNT_FIELDS, 0),
    )
    _wait_before_retry(context)
    try:
        batch_size = check_batch_size(config.batch_size)
        if not config.files:
            raise OptionsError("the run config lists no files (ops.raw_csv.config.files)")
    except OptionsError as exc:
        context.instance.add_run_tags(context.run.run_id, {MAX_RETRIES_TAG: "0"})
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    store, ledger = _ledger(contacts_db, config.dry_run)
    if not config.dry_run:
        store.create_schema()
    opened = imports.open_imports(
        config.files,
        run_id=context.run.run_id,
        root_run_id=_root(context),
        run_started=_run_started(context),
        origin=_origin(dict(context.run.tags)),
        bucket=bucket.open(),
        ledger=None if config.dry_run else ledger,
        limits=Limits.from_env(),
    )
    stage = stages.RunStage(_root(context), batch_size, opened, config.dry_run)
    _identity_tags(context, stage)
    raws = stage.working()
    for item in raws[:LOGGED_FILES]:  # every log line is an event in Dagster's storage: a few say enough
        table = item.table
        context.log.info(
            f"read {item.source}: {len(table.frame) + len(table.rejects)} rows, encoding {table.encoding}, "
            f"delimiter {table.delimiter!r}, {len(table.rejects)} unreadable rows"
        )
    if len(raws) > LOGGED_FILES:
        context.log.info(f"read {len(raws) - LOGGED_FILES} more files (each file's details are in the ledger)")
    _log_failures(context, stage)
    return dg.Output(
        stage,
        metadata={
            "files": len(stage.imports),
            "read": len(raws),
            "rows": sum(len(r.table.frame) + len(r.table.rejects) for r in raws),
            "unreadable_rows": sum(len(r.table.rejects) for r in raws),
        },
    )


def _log_failures(context: dg.AssetExecutionContext, stage: stages.RunStage) -> None:
    for item in stage.imports:
        if isinstance(item, stages.SettledImport) and item.status == ImportStatus.FAILED:
            context.log.warning(f"import of {item.key} failed: {item.error}")


@dg.asset(group_name=GROUP, kinds={"python"}, check_specs=checks.specs("normalized_contacts"))
def normalized_contacts(
    context: dg.AssetExecutionContext, raw_csv: stages.RunStage, contacts_db: ContactsDatabase
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Headers mapped to contact fields and phones normalized to E.164; rows without one fail.
    Its checks warn when the file looks misread (region, phone column, delimiter, encoding)."""
    _, ledger = _ledger(contacts_db, raw_csv.dry_run)
    out: list = []
    failed_misread: list[tuple[str, list]] = []  # files that failed as files, with what misread them
    for item in raw_csv.imports:
        if isinstance(item, stages.SettledImport):
            out.append(item)
            continue
        try:
            normalized = stages.normalize(item)
        except ImportFileError as exc:
            # A wrong delimiter often hides the phone column: say so with the failure.
            ragged = sum(1 for reject in item.table.rejects if reject.reason == Reason.WRONG_FIELD_COUNT)
            misread = diagnoses.delimiter(item.table.header, item.table.frame, ragged)
            error = f"{exc} ({misread.message})" if misread else str(exc)
            if misread:
                failed_misread.append((item.options.key, [misread]))
            out.append(
                imports.fail(
                    None if raw_csv.dry_run else ledger,
                    item.import_id,
                    item.position,
                    item.options.key,
                    item.options.workspace_id,
                    error,
                )
            )
            context.log.warning(f"import of {item.options.key} failed: {error}")
            continue
        normalized.diagnoses = diagnoses.of_normalized(normalized)
        out.append(normalized)
    stage = raw_csv.with_imports(out)
    working = stage.working()
    yield dg.Output(
        stage,
        metadata={
            "valid_phones": sum(len(n.contacts) for n in working),
            "failed_rows": sum(len(n.rejects) for n in working),
        },
    )
    diagnosed = [(n.options.key, n.diagnoses) for n in working] + failed_misread
    yield from checks.results("normalized_contacts", diagnosed, stage.dry_run)


@dg.asset(group_name=GROUP, kinds={"python"})
def deduped_contacts(
    context: dg.AssetExecutionContext, normalized_contacts: stages.RunStage, contacts_db: ContactsDatabase
) -> dg.Output:
    """Contacts whose phone is new: later copies in a file, phones an earlier file of the run adds and
    phones already in the workspace are skipped."""
    store, ledger = _ledger(contacts_db, normalized_contacts.dry_run)
    working = normalized_contacts.working()
    if normalized_contacts.dry_run:
        return _deduped_dry_run(context, normalized_contacts, store)
    recorded = store.recorded_plans([n.import_id for n in working])
    planned: dict[str, frozenset[str]] = {}
    for item in working:  # phones this run's imports planned on an earlier attempt, per workspace
        planned[item.options.workspace_id] = planned.get(item.options.workspace_id, frozenset()) | recorded.get(
            item.import_id, frozenset()
        )
    deduped = stages.dedupe(
        working,
        lambda workspace_id, phones: store.existing_phones(
            workspace_id, phones, planned.get(workspace_id, frozenset())
        ),
    )
    changed = [
        d.options.key
        for d in deduped
        if d.import_id in recorded and set(d.contacts["phone_number"]) != recorded[d.import_id]
    ]
    if changed:  # the batches recorded as landed would not hold the rows they name any more
        context.instance.add_run_tags(context.run.run_id, {MAX_RETRIES_TAG: "0"})
        raise dg.Failure(
            description=f"{', '.join(changed)}: the file's rows changed since this run's first attempt (replaced upload?); "
            "its earlier batches no longer match it. Upload it again to import it as a new import.",
            allow_retries=False,
        )
    store.record_plans({d.import_id: d.contacts["phone_number"] for d in deduped})
    count, members = stages.batch_membership(deduped, normalized_contacts.batch_size)
    ledger.planned(
        PlannedImport(
            d.import_id,
            d.total,
            d.skipped_before,
            d.failed_before,
            len(members[d.import_id]),
            {"encoding": d.encoding, "delimiter": d.delimiter},
        )
        for d in deduped
    )
    return _deduped_output(context, normalized_contacts, deduped, count)


def _deduped_dry_run(context: dg.AssetExecutionContext, normalized: stages.RunStage, store: ContactsStore) -> dg.Output:
    """Deduplicate as the import would, against the workspace's contacts, recording nothing."""
    deduped = stages.dedupe(normalized.working(), _lookup(store))
    count, _ = stages.batch_membership(deduped, normalized.batch_size)
    return _deduped_output(context, normalized, deduped, count)


def _deduped_output(
    context: dg.AssetExecutionContext, normalized: stages.RunStage, deduped: list[stages.DedupedImport], count: int
) -> dg.Output:
    by_id = {d.import_id: d for d in deduped}
    stage = normalized.with_imports([by_id.get(item.import_id, item) for item in normalized.imports])
    skipped = sum(d.skipped_before for d in deduped)
    failed = sum(d.failed_before for d in deduped)
    progress.report(
        context.instance,
        context.run.run_id,
        status=RunStatus.PROCESSING,
        total=sum(d.total for d in deduped),
        processed=skipped + failed,
        imported=0,
        updated=0,
        skipped=skipped,
        failed=failed,
        current_batch=0,
        total_batches=count,
        errors=_first_errors(deduped),
    )
    return dg.Output(
        stage,
        metadata={
            "to_insert": sum(len(d.contacts) + len(d.later) for d in deduped),
            "skipped_rows": skipped,
            "failed_rows": failed,
        },
    )


def _first_errors(items: list) -> list[dict[str, object]]:
    """The run's first errors; each names its file when the run carries several."""
    errors: list[dict[str, object]] = []
    for item in items:
        found = item.rejects.first_errors(FIRST_ERRORS) if hasattr(item, "rejects") else item.errors
        errors += [dict(e, file=item.options.key) if len(items) > 1 else e for e in found]
    return errors[:FIRST_ERRORS]


@dg.op(out=dg.DynamicOut(stages.Batch))
def plan_batches(deduped: stages.RunStage) -> Iterator[dg.DynamicOutput]:
    """Split the run's new contacts into batches, one insert step each (none in a dry run)."""
    if deduped.dry_run:
        return
    for batch in stages.plan_batches(deduped.working(), deduped.batch_size, deduped.run_key):
        yield dg.DynamicOutput(batch, mapping_key=f"batch_{batch.index:05d}")


def _insert(context: dg.OpExecutionContext, store: ContactsStore, batch: stages.Batch) -> stages.BatchResult:
    """Insert one batch and report the run's progress from inside its transaction."""
    started = time.time()

    def on_progress(p: ImportProgress) -> None:
        skipped = batch.skipped_before + p.skipped
        processed = skipped + batch.failed_before + p.imported + p.updated
        progress.report(
            context.instance,
            context.run.run_id,
            imported=p.imported,
            updated=p.updated,
            skipped=skipped,
            processed=processed,
            current_batch=min(p.batches, batch.count),
        )
        # The same counts as a log line, so the run page shows progress without opening the tags.
        context.log.info(
            f"progress: {processed}/{batch.total} rows processed | imported {p.imported} | updated {p.updated} "
            f"| skipped {skipped} | failed {batch.failed_before} | batch {min(p.batches, batch.count)}/{batch.count}"
        )

    outcomes = store.insert_batch(
        run_key=batch.run_key,
        batch_index=batch.index,
        imports=batch.imports,
        batch=batch.frame,
        update=batch.update,
        on_progress=on_progress if batch.imports else None,
    )
    finished = time.time()
    context.log.info(
        f"batch {batch.index + 1}: {sum(o.imported for o in outcomes.values())} imported, "
        f"{sum(o.updated for o in outcomes.values())} updated, {sum(o.skipped for o in outcomes.values())} skipped "
        f"for {len(batch.imports)} files in {finished - started:.2f}s"
    )
    return stages.BatchResult(index=batch.index, outcomes=outcomes, started_at=started, finished_at=finished)


@dg.op(
    pool=CONTACTS_DB_POOL,
    tags=INSERT_STEP_TAG,
    retry_policy=dg.RetryPolicy(max_retries=4, delay=1.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
)
def insert_batch(
    context: dg.OpExecutionContext, batch: stages.Batch, contacts_db: ContactsDatabase
) -> stages.BatchResult:
    """Insert one batch in one transaction (idempotent: a landed batch is never applied twice)."""
    return _insert(context, contacts_db.store(), batch)


CONTACTS_CHECKS = checks.specs("contacts")
# The summarize op's outputs: the asset's value, then one per check of ``contacts`` (graph-asset names).
CHECK_OUTPUTS = [spec.get_python_identifier() for spec in CONTACTS_CHECKS]


@dg.op(
    out={"result": dg.Out(), **{name: dg.Out() for name in CHECK_OUTPUTS}},
    retry_policy=dg.RetryPolicy(max_retries=4, delay=1.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
)
def summarize(
    context: dg.OpExecutionContext,
    deduped: stages.RunStage,
    results: list[stages.BatchResult],
    contacts_db: ContactsDatabase,
    bucket: BucketResource,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Apply the later-phase updates, total each import from what the database recorded, write its
    rejects file, clean up its source and record its outcome in the ledger (a dry run predicts the
    totals and writes nothing)."""
    store, ledger = _ledger(contacts_db, deduped.dry_run)
    working = deduped.working()
    if deduped.dry_run:
        summaries, count = _predicted(deduped, store)
        lines = [_settled_line(item) for item in deduped.imports if isinstance(item, stages.SettledImport)]
        lines += [_preview_line(summary, item) for summary, item in summaries]
        value = _run_value(sorted(lines, key=lambda line: line["position"]), count=count) | {"dry_run": True}
        yield from _finish(context, value, [(s.file, s.diagnoses) for s, _ in summaries])
        return
    later = stages.later_batches(working, deduped.batch_size, deduped.run_key)
    results = list(results) + [_insert(context, store, batch) for batch in later]
    _, members = stages.batch_membership(working, deduped.batch_size)
    recorded = store.recorded_batches([d.import_id for d in working])
    insert_seconds = stages.insert_wall_seconds(results)
    summaries, broken = [], []
    for item in working:
        try:
            summaries.append(
                (stages.summarize(item, members[item.import_id], recorded[item.import_id], insert_seconds), item)
            )
        except stages.AccountingError as exc:
            broken.append(str(exc))
    if broken:  # nothing completes: a re-execution plans every import of the run again, same batches
        value = _run_value(_entry_lines(ledger, deduped), count=len(results))
        _fail(context, value, "; ".join(broken), retry=True)
    uploads = bucket.open()
    ledger.complete(imports.in_threads(lambda pair: imports.result_of(*pair, uploads), summaries))
    entries = _entries(ledger, deduped)
    options = {item.import_id: item.options for item in deduped.imports if item.options is not None}
    pending = [
        (e.import_id, options[e.import_id])
        for e in entries
        if e.status == ImportStatus.COMPLETED and e.cleanup is None and e.import_id in options
    ]
    imports.clean_up_completed(pending, uploads, ledger, context.log.warning)
    value = _run_value(_entry_lines(ledger, deduped), count=len(results))
    yield from _finish(context, value, [(s.file, s.diagnoses) for s, _ in summaries])


def _predicted(
    deduped: stages.RunStage, store: ContactsStore
) -> tuple[list[tuple[stages.Summary, stages.DedupedImport]], int]:
    """Each working import's summary as its import would record it, and the run's batch count (a dry run)."""
    working = deduped.working()
    outcomes, count = preview.predicted_outcomes(working, deduped.batch_size, deduped.run_key, _lookup(store))
    _, members = stages.batch_membership(working, deduped.batch_size)
    summaries = [
        (stages.summarize(item, members[item.import_id], outcomes[item.import_id], 0.0), item) for item in working
    ]
    return summaries, count


def _lookup(store: ContactsStore) -> stages.Lookup:
    """Existing phones as a dry run looks them up: a database without contacts yet has none, and
    nothing is created to find out."""
    return store.existing_phones if store.has_contacts() else lambda workspace_id, phones: set()


def _finish(
    context: dg.OpExecutionContext, value: dict, diagnosed: list[tuple[str, list]]
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """End the run: fail it if every file failed, else report it completed, with the checks of ``contacts``."""
    lines = value["files"]
    if lines and all(line["status"] == ImportStatus.FAILED for line in lines):
        reasons = (
            lines[0]["error"] or ""
            if len(lines) == 1
            else "; ".join(f"{line['file']}: {line['error']}" for line in lines)
        )
        _fail(context, value, reasons, retry=False)
    progress.report(
        context.instance,
        context.run.run_id,
        status=RunStatus.COMPLETED,
        **_counts(value),
        current_batch=value["batches"],
        total_batches=value["batches"],
        errors=value["errors"],
    )
    yield dg.Output(value, "result", metadata=_metadata(value))
    yield from checks.results("contacts", diagnosed, bool(value.get("dry_run")))


def _entries(ledger: Ledger, stage: stages.RunStage) -> list[LedgerEntry]:
    """The run's imports as the ledger has them, in upload order."""
    return sorted(ledger.entries(import_ids=[item.import_id for item in stage.imports]), key=lambda e: e.position)


def _entry_lines(ledger: Ledger, stage: stages.RunStage) -> list[dict[str, Any]]:
    return [e.to_dict() for e in _entries(ledger, stage)]


def _settled_line(item: stages.SettledImport) -> dict[str, Any]:
    """A file that failed as a file, in a dry run (which records nothing in the ledger)."""
    counts = dict.fromkeys(("total", "imported", "updated", "skipped", "failed"), 0)
    return {
        "import_id": item.import_id,
        "position": item.position,
        "file": item.key,
        "workspace_id": item.workspace_id,
        "import_tag": "",
        "status": str(item.status),
        "error": item.error,
        "rejects_file": None,
        "skipped_by_reason": {},
        "failed_by_reason": {},
        "errors": [],
        **counts,
    }


def _preview_line(summary: stages.Summary, item: stages.DedupedImport) -> dict[str, Any]:
    """What an import would record, and the sample contacts it would insert (a dry run)."""
    return summary.as_dict() | {
        "import_id": summary.import_id,
        "position": item.position,
        "error": None,
        "rejects_file": None,
        "sample_contacts": preview.sample_contacts(item),
    }


def _fail(context: dg.OpExecutionContext, value: dict, reason: str, retry: bool) -> NoReturn:
    """Fail the run with ``reason``. Without ``retry`` (every file failed as a file) the automatic
    run retries leave it alone: the same files would fail the same way."""
    tags = {MAX_RETRIES_TAG: "0"} if not retry else {}
    context.instance.add_run_tags(
        context.run.run_id,
        tags | progress.progress_tags({"status": RunStatus.FAILED, "error": reason, **_counts(value)}),
    )
    raise dg.Failure(description=reason, allow_retries=False)


def _counts(value: dict) -> dict[str, int]:
    return {k: value[k] for k in ("total", "processed", "imported", "updated", "skipped", "failed")}


def _run_value(lines: list[dict[str, Any]], count: int) -> dict:
    """The ``contacts`` asset's value: the run's totals and one line per import (from the ledger, or
    predicted in a dry run, where ``previews`` holds each import's whole prediction)."""
    completed = [line for line in lines if line["status"] == ImportStatus.COMPLETED]
    skipped_by: dict[str, int] = {}
    failed_by: dict[str, int] = {}
    for line in completed:
        for reason, n in line["skipped_by_reason"].items():
            skipped_by[reason] = skipped_by.get(reason, 0) + n
        for reason, n in line["failed_by_reason"].items():
            failed_by[reason] = failed_by.get(reason, 0) + n
    totals = {
        name: sum(line[name] for line in completed) for name in ("total", "imported", "updated", "skipped", "failed")
    }
    errors: list[dict[str, object]] = []
    for line in completed:
        errors += [dict(err, file=line["file"]) if len(lines) > 1 else err for err in line["errors"]]
    value = {
        "status": str(ImportStatus.COMPLETED if completed else ImportStatus.FAILED),
        **totals,
        "processed": sum(totals[k] for k in ("imported", "updated", "skipped", "failed")),
        "batches": count,
        "skipped_by_reason": skipped_by,
        "failed_by_reason": failed_by,
        "errors": errors[:FIRST_ERRORS],
        "imports": len(lines),
        "completed_imports": len(completed),
        "failed_imports": sum(1 for line in lines if line["status"] == ImportStatus.FAILED),
        "files": [{key: line.get(key) for key in IMPORT_LINE_KEYS} for line in lines],
    }
    if any("sample_contacts" in line for line in lines):
        value["previews"] = lines
    return value


# What the asset's value says of each import.
IMPORT_LINE_KEYS = (
    "import_id",
    "file",
    "workspace_id",
    "import_tag",
    "status",
    "total",
    "imported",
    "updated",
    "skipped",
    "failed",
    "rejects_file",
    "error",
)


# The imports table in the UI: its column, and the key of the import's line it shows.
TABLE_COLUMNS = {
    "file": "file",
    "workspace": "workspace_id",
    "tag": "import_tag",
    "status": "status",
    "total": "total",
    "imported": "imported",
    "updated": "updated",
    "skipped": "skipped",
    "failed": "failed",
    "error": "error",
}
IMPORTS_TABLE = dg.TableSchema(
    columns=[
        dg.TableColumn(column, "int" if column in ("total", "imported", "updated", "skipped", "failed") else "string")
        for column in TABLE_COLUMNS
    ]
)


def _metadata(value: dict) -> dict[str, Any]:
    lines = [
        f"**{value['imported']}** imported, **{value['updated']}** updated, **{value['skipped']}** skipped "
        f"(duplicates), **{value['failed']}** failed of **{value['total']}** rows in {value['batches']} batches, "
        f"from **{value['completed_imports']}** of {value['imports']} files ({value['failed_imports']} failed as files).",
    ]
    if value["errors"]:
        lines += ["", "| file | row | reason | detail |", "|---|---|---|---|"]
        lines += [
            f"| {e.get('file', value['files'][0]['file'] if value['files'] else '')} | {e['row']} | {e['reason']} | {str(e['detail']).replace('|', '/')} |"
            for e in value["errors"]
        ]
    meta: dict[str, Any] = {
        key: dg.MetadataValue.json(item) if isinstance(item, (dict, list)) else item
        for key, item in value.items()
        if item is not None and key not in ("files", "previews")
    }
    meta["imports_table"] = dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {column: line[key] or "" if column == "error" else line[key] for column, key in TABLE_COLUMNS.items()}
            )
            for line in value["files"]
        ],
        schema=IMPORTS_TABLE,
    )
    meta["summary"] = dg.MetadataValue.md("\n".join(lines))
    meta["dagster/row_count"] = value["imported"]
    return meta


@dg.graph_asset(group_name=GROUP, kinds={"postgres", "sqlite"}, check_specs=CONTACTS_CHECKS)
def contacts(deduped_contacts: stages.RunStage) -> dict:
    """Contacts inserted in batches (at most 5 at once), then counted per import from what the database recorded.
    Its checks warn when a file was nearly all imported before, or nearly all failed."""
    results = plan_batches(deduped_contacts).map(insert_batch).collect()
    outputs = summarize(deduped_contacts, results)
    return {name: getattr(outputs, name) for name in ("result", *CHECK_OUTPUTS)}
