"""The four assets of one import, partitioned per uploaded file. Each calls plain functions."""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import dagster as dg

from contact_import_pipeline import progress, stages
from contact_import_pipeline.bucket import ContactBucket
from contact_import_pipeline.contacts_store import ImportProgress
from contact_import_pipeline.csv_reading import read_csv_loaded
from contact_import_pipeline.errors import ImportFileError, OptionsError
from contact_import_pipeline.keys import parse_import_key
from contact_import_pipeline.options import ImportOptions, ResolvedOptions, resolve_options
from contact_import_pipeline.partitions import contact_files
from contact_import_pipeline.rejects import rejects_csv
from contact_import_pipeline.resources import ContactsDatabase
from contact_import_pipeline.settings import CONTACTS_DB_POOL, FIRST_ERRORS, Limits
from contact_import_pipeline.sources import read_source, source_name

GROUP = "contact_import"
INSERT_STEP_TAG = {"contact_import/step": "insert"}


@contextmanager
def failing_clearly(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> Iterator[None]:
    """Turn a user error into a failed run whose reason is the error's own message.

    The progress tags get ``status=failed`` and the reason; no retry is attempted, because the
    same input would fail the same way.
    """
    try:
        yield
    except (ImportFileError, OptionsError, stages.AccountingError) as exc:
        progress.report(context.instance, context.run.run_id, status="failed", error=str(exc))
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def import_id_of(context: dg.OpExecutionContext | dg.AssetExecutionContext, partition_key: str) -> str:
    """The id batch outcomes are recorded under, shared by a run and all its re-executions.

    It uses the run's ``root_run_id`` field, not the ``dagster/root_run_id`` tag: re-executions
    started from Python (``execute_job``) set only the field, and a per-run id would make the
    summary miss every batch a re-execution inserted, or count the crashed run's rows as skipped.
    """
    return f"{context.run.root_run_id or context.run.run_id}:{partition_key}"


def _import_started_at(context: dg.AssetExecutionContext) -> datetime | None:
    """When the first run of this import was created (re-executions share its default tag)."""
    record = context.instance.get_run_record_by_id(context.run.root_run_id or context.run.run_id)
    return record.create_timestamp if record is not None else None


@dg.asset(partitions_def=contact_files, group_name=GROUP, kinds={"csv"})
def raw_csv(context: dg.AssetExecutionContext, config: ImportOptions, bucket: ContactBucket) -> dg.Output:
    """The uploaded CSV, decoded (encoding and delimiter detected) into rows of text."""
    started = time.perf_counter()
    key = context.partition_key
    progress.report(context.instance, context.run.run_id, status="initializing", file=key)
    with failing_clearly(context):
        upload_options = bucket.read_options(key) if not config.source and bucket.exists(key) else {}
        options = resolve_options(config, key, upload_options, _import_started_at(context))
        progress.report(
            context.instance, context.run.run_id, workspace=options.workspace_id, import_tag=options.import_tag
        )
        limits = Limits.from_env()
        name = source_name(options)
        table = read_csv_loaded(lambda: read_source(options, bucket, limits.max_file_bytes), name, limits)
    seconds = time.perf_counter() - started
    context.log.info(
        f"read {name}: {len(table.frame) + len(table.rejects)} rows, encoding {table.encoding}, "
        f"delimiter {table.delimiter!r}, {len(table.rejects)} unreadable rows"
    )
    return dg.Output(
        stages.RawImport(options=options, table=table, timings={"reading": seconds}),
        metadata={
            "rows": len(table.frame) + len(table.rejects),
            "unreadable_rows": len(table.rejects),
            "encoding": table.encoding,
            "delimiter": table.delimiter,
            "columns": dg.MetadataValue.json(table.header),
            "workspace_id": options.workspace_id,
            "import_tag": options.import_tag,
        },
    )


@dg.asset(partitions_def=contact_files, group_name=GROUP, kinds={"python"})
def normalized_contacts(context: dg.AssetExecutionContext, raw_csv: stages.RawImport) -> dg.Output:
    """Headers mapped to contact fields and phones normalized to E.164; rows without one fail."""
    with failing_clearly(context):
        normalized = stages.normalize(raw_csv)
    failed = len(normalized.rejects)
    return dg.Output(
        normalized,
        metadata={
            "valid_phones": len(normalized.contacts),
            "failed_rows": failed,
            "column_mapping": dg.MetadataValue.json(
                {f: normalized.header[p] for f, p in normalized.plan.fields.items()}
                | {"phone": [normalized.header[p] for p in normalized.plan.phones]}
            ),
            "default_region": normalized.options.default_region,
        },
    )


@dg.asset(partitions_def=contact_files, group_name=GROUP, kinds={"python"})
def deduped_contacts(
    context: dg.AssetExecutionContext, normalized_contacts: stages.NormalizedImport, contacts_db: ContactsDatabase
) -> dg.Output:
    """Contacts whose phone is new: later copies in the file and phones already in the workspace are skipped."""
    store = contacts_db.store()
    store.create_schema()
    import_id = import_id_of(context, normalized_contacts.options.partition_key)
    store.resume_plan(import_id)
    deduped = stages.dedupe(normalized_contacts, store)
    store.record_plan(import_id, deduped.contacts["phone_number"])
    skipped = sum(deduped.rejects.counts(skipped=True).values())
    failed = len(deduped.rejects) - skipped
    batches = max(1, -(-len(deduped.contacts) // deduped.options.batch_size))
    progress.report(
        context.instance,
        context.run.run_id,
        status="processing",
        total=deduped.total,
        processed=skipped + failed,
        imported=0,
        updated=0,
        skipped=skipped,
        failed=failed,
        current_batch=0,
        total_batches=batches,
        errors=deduped.rejects.first_errors(FIRST_ERRORS),
    )
    return dg.Output(
        deduped,
        metadata={"to_insert": len(deduped.contacts), "skipped_rows": skipped, "failed_rows": failed},
    )


@dg.op(out=dg.DynamicOut(stages.Batch))
def plan_batches(context: dg.OpExecutionContext, deduped: stages.DedupedImport) -> Iterator[dg.DynamicOutput]:
    """Split the new contacts into batches, one insert step each."""
    import_id = import_id_of(context, deduped.options.partition_key)
    for batch in stages.plan_batches(deduped, import_id):
        yield dg.DynamicOutput(batch, mapping_key=f"batch_{batch.index:05d}")


@dg.op(
    pool=CONTACTS_DB_POOL,
    tags=INSERT_STEP_TAG,
    retry_policy=dg.RetryPolicy(max_retries=4, delay=1.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
)
def insert_batch(
    context: dg.OpExecutionContext, batch: stages.Batch, contacts_db: ContactsDatabase
) -> stages.BatchResult:
    """Insert one batch in one transaction (idempotent: a landed batch is never applied twice)."""
    started = time.time()
    options: ResolvedOptions = batch.options

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
            current_batch=p.batches,
        )
        # The same counts as a log line, so the run page shows progress without opening the tags.
        context.log.info(
            f"progress: {processed}/{batch.total} rows processed | imported {p.imported} | updated {p.updated} "
            f"| skipped {skipped} | failed {batch.failed_before} | batch {p.batches}/{batch.count}"
        )

    outcome = contacts_db.store().insert_batch(
        import_id=batch.import_id,
        batch_index=batch.index,
        workspace_id=options.workspace_id,
        import_tag=options.import_tag,
        board_phone_number=options.board_phone_number,
        batch=batch.frame,
        on_progress=on_progress,
        on_duplicate=options.on_duplicate,
    )
    finished = time.time()
    seconds = finished - started
    context.log.info(
        f"batch {batch.index + 1}/{batch.count}: {outcome.imported} imported, {outcome.updated} updated, "
        f"{outcome.skipped} skipped in {seconds:.2f}s"
    )
    return stages.BatchResult(index=batch.index, outcome=outcome, started_at=started, finished_at=finished)


@dg.op
def summarize(
    context: dg.OpExecutionContext,
    deduped: stages.DedupedImport,
    results: list[stages.BatchResult],
    contacts_db: ContactsDatabase,
    bucket: ContactBucket,
) -> dg.Output:
    """Total the batches recorded in the database, write the rejects file and clean up the source."""
    options = deduped.options
    import_id = import_id_of(context, options.partition_key)
    planned = max(1, -(-len(deduped.contacts) // options.batch_size))
    insert_seconds = stages.insert_wall_seconds(results)
    with failing_clearly(context):
        summary = stages.summarize(deduped, planned, contacts_db.store().recorded_batches(import_id), insert_seconds)
    rejects_file = None
    if summary.rejects:
        rejects_file = bucket.write_bytes(
            parse_import_key(options.partition_key).rejects_key, rejects_csv(deduped.header, summary.rejects)
        )
    cleanup = _clean_up(context, bucket, options)
    progress.report(
        context.instance,
        context.run.run_id,
        status="completed",
        **summary.counts(),
        current_batch=planned,
        total_batches=planned,
        errors=summary.errors,
    )
    value = summary.as_dict() | {"rejects_file": rejects_file, "cleanup": cleanup}
    return dg.Output(value, metadata=_metadata(value))


def _clean_up(context: dg.OpExecutionContext, bucket: ContactBucket, options: ResolvedOptions) -> str:
    """Archive, delete or keep the source; a failure here is reported but does not undo the import."""
    if not options.reads_bucket or options.cleanup == "keep":
        return "kept"
    try:
        if options.cleanup == "delete":
            bucket.delete(options.partition_key)
            return "deleted"
        return "archived to " + bucket.archive(options.partition_key)
    except Exception as exc:  # noqa: BLE001 - storage errors of any backend; the import itself succeeded
        context.log.warning(f"could not clean up {options.partition_key}: {exc}")
        return f"cleanup failed: {exc}"


def _metadata(value: dict) -> dict[str, object]:
    lines = [
        f"**{value['imported']}** imported, **{value['updated']}** updated, **{value['skipped']}** skipped "
        f"(duplicates), **{value['failed']}** failed of **{value['total']}** rows in {value['batches']} batches.",
        "",
        f"Import tag `{value['import_tag']}` in workspace `{value['workspace_id']}`.",
    ]
    if value["errors"]:
        lines += ["", "| row | reason | detail |", "|---|---|---|"]
        lines += [f"| {e['row']} | {e['reason']} | {str(e['detail']).replace('|', '/')} |" for e in value["errors"]]
    meta: dict[str, object] = {
        key: dg.MetadataValue.json(item) if isinstance(item, (dict, list)) else item
        for key, item in value.items()
        if item is not None
    }
    meta["summary"] = dg.MetadataValue.md("\n".join(lines))
    meta["dagster/row_count"] = value["imported"]
    return meta


@dg.graph_asset(partitions_def=contact_files, group_name=GROUP, kinds={"postgres", "sqlite"})
def contacts(deduped_contacts: stages.DedupedImport) -> dict:
    """Contacts inserted in batches (at most 5 at once), then counted from what the database recorded."""
    results = plan_batches(deduped_contacts).map(insert_batch).collect()
    return summarize(deduped_contacts, results)
