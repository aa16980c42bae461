"""defs.definitions: the code location loads as the webserver and daemon load it."""

from __future__ import annotations

import dagster as dg

from contact_import_pipeline.defs import assets
from contact_import_pipeline.defs.definitions import defs
from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME


def test_definitions_load_and_the_import_job_resolves() -> None:
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(IMPORT_JOB_NAME).name == IMPORT_JOB_NAME


def test_the_diagnoses_are_asset_checks_of_the_assets() -> None:
    specs = [*assets.normalized_contacts.check_specs, *assets.contacts.check_specs]
    assert sorted(f"{spec.asset_key.to_user_string()}:{spec.name}" for spec in specs) == [
        "contacts:not_imported_before",
        "contacts:rows_mostly_imported",
        "normalized_contacts:phone_column_holds_the_phones",
        "normalized_contacts:phones_valid_in_default_region",
        "normalized_contacts:read_with_the_right_delimiter_and_encoding",
    ]
