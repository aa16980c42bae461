"""The import's diagnoses as Dagster asset checks, shown in the UI next to the asset and the run.

Each check warns (WARN severity: the import still completes) when a diagnosis of its kind fires
for any import of the run, with the messages as its description and the numbers as metadata.
The assets compute the diagnoses (``importing.diagnoses``) and yield these results themselves, so
a check costs no step of its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from contact_import_pipeline.model import Diagnosis
from contact_import_pipeline.vocabulary import DiagnosisCode

# asset -> check name -> (the diagnoses it reports, what a passing check means)
CHECKS: dict[str, dict[str, tuple[tuple[DiagnosisCode, ...], str]]] = {
    "normalized_contacts": {
        "phones_valid_in_default_region": (
            (DiagnosisCode.DEFAULT_REGION,),
            "Phones invalid in the default region are not mostly valid in another region.",
        ),
        "phone_column_holds_the_phones": (
            (DiagnosisCode.PHONE_COLUMN,),
            "No other column holds many more valid phones than the phone column used.",
        ),
        "read_with_the_right_delimiter_and_encoding": (
            (DiagnosisCode.DELIMITER, DiagnosisCode.ENCODING),
            "No column holds another delimiter throughout, and no cells hold mojibake such as 'Ã©'.",
        ),
    },
    "contacts": {
        "not_imported_before": (
            (DiagnosisCode.ALREADY_IMPORTED,),
            "The file's rows are not nearly all contacts of the workspace already.",
        ),
        "rows_mostly_imported": ((DiagnosisCode.MOSTLY_FAILED,), "Not nearly every row of the file failed."),
    },
}
SHOWN_MESSAGES = 5  # a check's description names this many flagged imports


def specs(asset: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, description=meaning) for name, (_, meaning) in CHECKS[asset].items()]


def results(
    asset: str, diagnosed: Sequence[tuple[str, Sequence[Diagnosis]]], dry_run: bool
) -> Iterator[dg.AssetCheckResult]:
    """One result per check of ``asset``, from each import's (file, diagnoses)."""
    for name, (codes, _) in CHECKS[asset].items():
        flagged = [(file, d) for file, found in diagnosed for d in found if d.code in codes]
        metadata: dict[str, Any] = {
            "imports_checked": len(diagnosed),
            "imports_flagged": len({file for file, _ in flagged}),
            "dry_run": dry_run,
        }
        if flagged:
            metadata.update(flagged[0][1].numbers)  # the first flagged import's numbers, as plain metadata
            metadata["diagnoses"] = dg.MetadataValue.json([{"file": file, **d.as_dict()} for file, d in flagged])
        lines = [f"{file}: {d.message}" for file, d in flagged[:SHOWN_MESSAGES]]
        if len(flagged) > SHOWN_MESSAGES:
            lines.append(f"... and {len(flagged) - SHOWN_MESSAGES} more (metadata 'diagnoses')")
        yield dg.AssetCheckResult(
            asset_key=asset,
            check_name=name,
            passed=not flagged,
            severity=dg.AssetCheckSeverity.WARN,
            description="\n".join(lines) or None,
            metadata=metadata,
        )
