"""The import job: the four assets of one file, with at most 5 insert batches at once."""

import dagster as dg

from contact_import_pipeline.assets import GROUP, INSERT_STEP_TAG
from contact_import_pipeline.settings import MAX_CONCURRENT_BATCHES

IMPORT_JOB_NAME = "import_job"

# forkserver starts a step in ~0.5 s instead of ~1.1 s with spawn; the tag limit keeps at most 5
# insert batches of one run in flight (the contacts_db pool limits writers across runs).
import_executor = dg.multiprocess_executor.configured(
    {
        "max_concurrent": MAX_CONCURRENT_BATCHES,
        "start_method": {"forkserver": {}},
        "tag_concurrency_limits": [
            {"key": key, "value": value, "limit": MAX_CONCURRENT_BATCHES} for key, value in INSERT_STEP_TAG.items()
        ],
    }
)

import_job = dg.define_asset_job(
    IMPORT_JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=import_executor,
    description="Import one contact CSV file (one partition of contact_files) into the contacts table.",
)
