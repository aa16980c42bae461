"""Run config of the import job: the files of a run, in upload order, each with its options.

The Launchpad shows every field with its description and default. The options are validated per
file by ``importing.options.resolve_options``: a bad option fails that file only.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from contact_import_pipeline.settings import DEFAULT_BATCH_SIZE, DEFAULT_REGION


class FileImport(dg.Config):
    """One file of a run and how to import it. Every option is optional; empty means the default."""

    key: str = Field(
        default="",
        description="Bucket key of the upload, <workspace_id>/imports/<name>.csv: where it is read from (unless "
        "source is set), and where its rejects file and archive go. May be left empty when source is a URL and "
        "workspace_id is set; the key is then <workspace_id>/imports/<name in the URL>.",
    )
    version: str = Field(
        default="", description="Version of the bucket object (ETag, or mtime-size of a local file); recorded only."
    )
    uploaded_at: float = Field(
        default=0.0,
        description="When the file was uploaded (Unix seconds). Dates the default import tag. Default: the run's start.",
    )
    workspace_id: str = Field(
        default="",
        description="Workspace the contacts belong to. It is the first folder of the key; if given here it must match.",
    )
    source: str = Field(
        default="",
        description="Where to read the CSV. Default: the key's object in the bucket. May be an http(s):// URL "
        "(e.g. a signed storage URL).",
    )
    import_tag: str = Field(
        default="",
        description="Tag added to every imported contact. Default: import:<UTC upload time>Z, unique in the workspace.",
    )
    board_phone_number: str = Field(
        default="",
        description="Optional board phone number, normalized to E.164 and stored in metadata.board_phone_number.",
    )
    user_id: str = Field(default="", description="Optional id of the user who started the import (recorded only).")
    default_region: str = Field(
        default="",
        description=f"Region (ISO 3166 alpha-2) for national phone numbers when a row has no country. Default: {DEFAULT_REGION}.",
    )
    column_mapping: dict[str, str] = Field(
        default_factory=dict,
        description="Explicit mapping from contact field (firstname, lastname, email, phone, country, full_name, "
        "lead_source, market, product, lead_status, st_address, city, state, zip) to a header of the file. "
        "Overrides the built-in header synonyms.",
    )
    on_duplicate: str = Field(
        default="",
        description="What to do with a phone that already exists in the workspace: 'skip' (default) or 'update' "
        "(fill its empty fields and add the import tag; never overwrite a value).",
    )
    cleanup: str = Field(
        default="",
        description="What happens to the source file after a successful import: 'archive' (move to "
        "<workspace_id>/imports/processed/), 'delete' or 'keep'. Default: $CONTACT_IMPORT_CLEANUP or 'archive'.",
    )


class ImportRunConfig(dg.Config):
    """The files one run imports, in upload order, and how large its insert batches are."""

    files: list[FileImport] = Field(
        description="The imports of this run, in upload order: a later file's phone that an earlier file of the "
        "same workspace imports counts as a duplicate of the workspace, as if the files ran one after another.",
    )
    batch_size: int = Field(
        default=DEFAULT_BATCH_SIZE,
        description=f"Contacts per insert batch; each batch is one transaction and one step. A batch may hold rows "
        f"of several files. Default: {DEFAULT_BATCH_SIZE}.",
    )
    dry_run: bool = Field(
        default=False,
        description="Read, map, normalize and deduplicate (against the workspace's contacts too) and predict each "
        "import's counts, mapping and diagnoses, writing nothing: no contact, ledger entry, rejects file or cleanup. "
        "Launched with a process per step, its step outputs are stored like any run's (and swept the same way); "
        "execution in_process with the in_memory IO manager, as contact-import import --dry-run runs, keeps them "
        "in memory. Default: false.",
    )
