"""The shapes the import's layers hand each other: what a contact row holds, a rejected row, and
what a batch is and did. Plain data, so the stages and the storage agree without importing each
other."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contact_import_pipeline.vocabulary import SKIP_REASONS

# The contact fields a file can fill (the reference schema's text columns besides the phone).
CONTACT_FIELDS: tuple[str, ...] = (
    "firstname",
    "lastname",
    "email",
    "lead_source",
    "market",
    "product",
    "lead_status",
    "st_address",
    "city",
    "state",
    "zip",
)
# Columns a batch row carries, in this order: the contact fields, then the E.164 phone.
BATCH_COLUMNS: tuple[str, ...] = (*CONTACT_FIELDS, "phone_number")
# The batch column beside them: the other valid numbers of the row's phone cell (E.164 joined by
# ","; '' when none), stored as the contact's ``metadata.other_phones`` list. Batches that never
# carry such numbers (ones built by hand) may leave the column out.
OTHER_PHONES = "other_phones"


@dataclass(frozen=True)
class Reject:
    """A row that was not imported: failed (bad data) or skipped (duplicate), with the line it
    starts on and its raw values."""

    row: int
    reason: str
    detail: str
    values: list[str]

    @property
    def skipped(self) -> bool:
        return self.reason in SKIP_REASONS


@dataclass(frozen=True)
class BatchImport:
    """One import's share of a batch: who its rows belong to and what a created contact carries."""

    import_id: str
    workspace_id: str
    import_tag: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class BatchOutcome:
    """What one batch did for one import: its rows, inserted (imported), already present (skipped), merged (updated)."""

    rows: int
    imported: int
    skipped: int
    updated: int
    conflict_rows: list[int]


@dataclass(frozen=True)
class ImportProgress:
    """Sums over the batches of one run recorded so far."""

    batches: int
    imported: int
    skipped: int
    updated: int


ProgressCallback = Callable[[ImportProgress], None]


@dataclass(frozen=True)
class Diagnosis:
    """A likely mistake in how a file was read or imported, with its fix in words and the numbers behind it."""

    code: str
    message: str
    numbers: dict[str, int | str]

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "numbers": dict(self.numbers)}
