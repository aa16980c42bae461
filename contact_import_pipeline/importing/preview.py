"""A dry run's answers: what the import would do, and how the file was understood.

A dry run reads, maps, normalizes and deduplicates exactly as an import does; here the insert is
predicted instead of done. The prediction walks the same batches the import would insert, so the
counts ``summarize`` totals from it are the ones the import records (a contact added by another
import meanwhile is the only difference, as it would be for an import started later).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from contact_import_pipeline.importing.stages import (
    Batch,
    DedupedImport,
    Lookup,
    NormalizedImport,
    later_batches,
    plan_batches,
)
from contact_import_pipeline.model import CONTACT_FIELDS, OTHER_PHONES, BatchOutcome

SAMPLE_CONTACTS = 5  # normalized rows a dry run shows


def predicted_outcomes(
    deduped: Sequence[DedupedImport], batch_size: int, run_key: str, lookup: Lookup
) -> tuple[dict[str, dict[int, BatchOutcome]], int]:
    """What each batch would do for each import, and how many batches the run would insert: new
    phones are imported; with ``update``, phones the workspace has (or an earlier file of the run
    adds) are merged and counted as updated."""
    out: dict[str, dict[int, BatchOutcome]] = {d.import_id: {} for d in deduped}
    first = plan_batches(deduped, batch_size, run_key)
    later = later_batches(deduped, batch_size, run_key)
    for batch in first:
        _predict(batch, out, lookup, merged_already=False)
    for batch in later:
        _predict(batch, out, lookup, merged_already=True)
    return out, len(first) + len(later)


def _predict(batch: Batch, out: dict[str, dict[int, BatchOutcome]], lookup: Lookup, merged_already: bool) -> None:
    for position, share in enumerate(batch.imports):
        phones = batch.frame.loc[batch.frame["import"] == position, "phone_number"]
        if merged_already:
            updated = len(phones)
        elif batch.update:
            updated = len(lookup(share.workspace_id, list(phones)))
        else:  # deduplication already set aside the phones the workspace has
            updated = 0
        out[share.import_id][batch.index] = BatchOutcome(
            rows=len(phones), imported=len(phones) - updated, skipped=0, updated=updated, conflict_rows=[]
        )


def sample_contacts(item: NormalizedImport | DedupedImport, count: int = SAMPLE_CONTACTS) -> list[dict[str, object]]:
    """The first contacts the import would insert, as stored: fields, E.164 phone, and the line they come from."""
    head: pd.DataFrame = item.contacts.head(count)
    columns = [name for name in (*CONTACT_FIELDS, "phone_number", OTHER_PHONES) if name in head]
    return [
        {"row": int(row), **{name: str(value) for name, value in zip(columns, values, strict=True) if value != ""}}
        for row, values in zip(head["row"], head[columns].itertuples(index=False, name=None), strict=True)
    ]
