"""defs.definitions: the code location loads as the webserver and daemon load it."""

from __future__ import annotations

import dagster as dg

from contact_import_pipeline.defs.definitions import defs
from contact_import_pipeline.vocabulary import IMPORT_JOB_NAME


def test_definitions_load_and_the_import_job_resolves() -> None:
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def(IMPORT_JOB_NAME).name == IMPORT_JOB_NAME
