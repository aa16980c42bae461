"""Limits and defaults in one place, each with the reason for its value.

Every limit can be overridden with the environment variable named beside it; the README lists them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


# Largest CSV accepted, in bytes. 512 MiB holds several million contact rows (a 1M-row export is
# ~110 MB) while keeping one import's memory well under the 1 GiB step budget.
MAX_FILE_BYTES_ENV = "CONTACT_IMPORT_MAX_FILE_BYTES"
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024

# Most columns accepted. Real CRM exports have at most ~250 (Outlook desktop: 92, Salesforce: ~60);
# 1,000 leaves room while refusing generated garbage that would blow up memory.
MAX_COLUMNS_ENV = "CONTACT_IMPORT_MAX_COLUMNS"
DEFAULT_MAX_COLUMNS = 1000

# Longest field, in characters. Notes and addresses stay far below 10,000; a longer field is
# almost always a broken quote that swallowed following lines.
MAX_FIELD_CHARS_ENV = "CONTACT_IMPORT_MAX_FIELD_CHARS"
DEFAULT_MAX_FIELD_CHARS = 10_000

# Rows per insert batch. Each batch is one Dagster step (~0.5 s to start with forkserver), so a
# batch must be large enough that a million rows make ten steps, not thousands. Measured on 2
# cores, a launched 1M-row import took 50 s with 25k-row batches, 39 s with 50k and 34 s with 100k;
# one 100k-row transaction takes ~3 s, so a retried batch stays cheap.
DEFAULT_BATCH_SIZE = 100_000

# Batches running at once inside one run, as in the reference design.
MAX_CONCURRENT_BATCHES = 5

# Threads a run uses for the bucket requests of its files (options, bytes, rejects files, archive):
# they wait on the network, not the CPU, and 8 keep a run of 200 files on S3 from queueing ~800
# requests one after another without opening more connections than boto3's default pool (10).
IO_THREADS = 8

# Errors kept in run metadata and progress (the reference design's "first 10 errors").
FIRST_ERRORS = 10

# Region used for national phone numbers when the row has no country column.
DEFAULT_REGION = "US"

# Dagster pool that limits database writers across all runs.
CONTACTS_DB_POOL = "contacts_db"


@dataclass(frozen=True)
class Limits:
    """Caps applied while reading one file."""

    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_columns: int = DEFAULT_MAX_COLUMNS
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS

    @classmethod
    def from_env(cls) -> Limits:
        """Limits with any environment overrides applied."""
        return cls(
            max_file_bytes=_env_int(MAX_FILE_BYTES_ENV, DEFAULT_MAX_FILE_BYTES),
            max_columns=_env_int(MAX_COLUMNS_ENV, DEFAULT_MAX_COLUMNS),
            max_field_chars=_env_int(MAX_FIELD_CHARS_ENV, DEFAULT_MAX_FIELD_CHARS),
        )


# Where uploads live (defs.resources.BucketResource): a local folder unless CONTACT_BUCKET=s3.
BUCKET_ENV = "CONTACT_BUCKET"
BUCKET_DIR_ENV = "CONTACT_BUCKET_DIR"
S3_BUCKET_ENV = "CONTACT_S3_BUCKET"
S3_PREFIX_ENV = "CONTACT_S3_PREFIX"
S3_ENDPOINT_ENV = "CONTACT_S3_ENDPOINT_URL"

# New-file sensor. 15 s between ticks keeps an upload's wait short while a listing of a few
# thousand keys stays far below the daemon's 60 s tick timeout; tests set 2 s.
SENSOR_INTERVAL_ENV = "CONTACT_SENSOR_INTERVAL_SECONDS"
DEFAULT_SENSOR_INTERVAL_SECONDS = 15
# Runs one tick may request. The daemon creates runs at under 2 per second on 2 cores (about 0.6 s
# each), so 10 runs of up to 200 files keep a tick under 10 s; a bigger drop is requested oldest
# first over the following ticks, while the first runs already work.
SENSOR_MAX_RUNS_ENV = "CONTACT_SENSOR_MAX_RUNS_PER_TICK"
DEFAULT_SENSOR_MAX_RUNS_PER_TICK = 10
# Packing uploads into runs. Files below SMALL_FILE_BYTES share a run (one start-up for all of
# them); a larger file gets a run of its own. A run holds at most MAX_FILES_PER_RUN files and
# MAX_RUN_BYTES bytes, so that its memory stays small and a retried run redoes little.
#
# How a run executes. Every run executes in one process with its step outputs in memory, unless it
# is one file of at least STEP_PROCESSES_BYTES: that one gets a process per step and 5 insert
# batches at once. On 2 cores with PostgreSQL beside it one process is faster at every size
# measured (bench/README.md, "Small or large": a 1M-row file 21 s against 29-38 s), because a
# process per step pays ~0.6 s to start each step and pickles every stage for the next. The limit
# is memory: one process holds a stage and the next, ~1,000 MB at a 1M-row (~100 MB) file, also
# with an emoji in every name (text stays in Arrow's UTF-8). 100 MiB keeps such a file inside the
# 1 GiB budget; lower it where inserts should run 5 at once against a database with many cores.
SMALL_FILE_BYTES_ENV = "CONTACT_SENSOR_SMALL_FILE_BYTES"
DEFAULT_SMALL_FILE_BYTES = 40 * 1024 * 1024
MAX_FILES_PER_RUN_ENV = "CONTACT_SENSOR_MAX_FILES_PER_RUN"
DEFAULT_MAX_FILES_PER_RUN = 200
MAX_RUN_BYTES_ENV = "CONTACT_SENSOR_MAX_RUN_BYTES"
DEFAULT_MAX_RUN_BYTES = 48 * 1024 * 1024
STEP_PROCESSES_BYTES_ENV = "CONTACT_STEP_PROCESSES_BYTES"
DEFAULT_STEP_PROCESSES_BYTES = 100 * 1024 * 1024

# A local file must be unchanged between two ticks and this old before it is imported, so a copy
# still in progress (or paused for a moment) is never read half-written. S3 uploads are atomic.
SENSOR_SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class SensorSettings:
    """How often the new-file sensor looks, how it packs files into runs and how much one tick may launch."""

    interval_seconds: int = DEFAULT_SENSOR_INTERVAL_SECONDS
    max_runs_per_tick: int = DEFAULT_SENSOR_MAX_RUNS_PER_TICK
    settle_seconds: float = SENSOR_SETTLE_SECONDS
    small_file_bytes: int = DEFAULT_SMALL_FILE_BYTES
    max_files_per_run: int = DEFAULT_MAX_FILES_PER_RUN
    max_run_bytes: int = DEFAULT_MAX_RUN_BYTES
    step_processes_bytes: int = DEFAULT_STEP_PROCESSES_BYTES

    def in_one_process(self, sizes: list[int | None]) -> bool:
        """Whether a run of files of these sizes (None: unknown, such as a URL) executes in one process."""
        known = [size for size in sizes if size is not None]
        return len(known) == len(sizes) and sum(known) < self.step_processes_bytes

    @classmethod
    def from_env(cls) -> SensorSettings:
        """Settings with any environment overrides applied."""
        return cls(
            interval_seconds=_env_int(SENSOR_INTERVAL_ENV, DEFAULT_SENSOR_INTERVAL_SECONDS),
            max_runs_per_tick=_env_int(SENSOR_MAX_RUNS_ENV, DEFAULT_SENSOR_MAX_RUNS_PER_TICK),
            small_file_bytes=_env_int(SMALL_FILE_BYTES_ENV, DEFAULT_SMALL_FILE_BYTES),
            max_files_per_run=_env_int(MAX_FILES_PER_RUN_ENV, DEFAULT_MAX_FILES_PER_RUN),
            max_run_bytes=_env_int(MAX_RUN_BYTES_ENV, DEFAULT_MAX_RUN_BYTES),
            step_processes_bytes=_env_int(STEP_PROCESSES_BYTES_ENV, DEFAULT_STEP_PROCESSES_BYTES),
        )


# Automatic run retries (dagster.yaml ``run_retries``, strategy ALL_STEPS). Dagster starts a retry
# at once; the retry then waits base * 2^(n-1) seconds (at most the cap) before it works, so a
# database or bucket outage of a few minutes is outlasted without anyone acting.
RUN_RETRY_DELAY_ENV = "CONTACT_IMPORT_RETRY_DELAY_SECONDS"
DEFAULT_RUN_RETRY_DELAY_SECONDS = 15
RUN_RETRY_MAX_DELAY_SECONDS = 300


@dataclass(frozen=True)
class RunRetrySettings:
    """Backoff of automatic run retries."""

    base_seconds: float = DEFAULT_RUN_RETRY_DELAY_SECONDS
    max_seconds: float = RUN_RETRY_MAX_DELAY_SECONDS

    def delay_seconds(self, retry: int) -> float:
        """Seconds retry number ``retry`` (1, 2, ...) waits before it starts working."""
        return min(self.max_seconds, self.base_seconds * 2 ** max(0, retry - 1))

    @classmethod
    def from_env(cls) -> RunRetrySettings:
        return cls(base_seconds=_env_int(RUN_RETRY_DELAY_ENV, DEFAULT_RUN_RETRY_DELAY_SECONDS))


# Step outputs (pickled stage values) of runs with a process per step. They are deleted once the
# run (or a re-execution of it) succeeds; a failed run keeps them this long, so that it can still
# be re-executed from failure, then they go too: they hold the files' personal data.
OUTPUT_RETENTION_ENV = "CONTACT_IMPORT_OUTPUT_RETENTION_HOURS"
DEFAULT_OUTPUT_RETENTION_HOURS = 72
# The sweep that deletes them runs this often.
OUTPUT_SWEEP_SECONDS = 30


def output_retention_seconds() -> float:
    return _env_int(OUTPUT_RETENTION_ENV, DEFAULT_OUTPUT_RETENTION_HOURS) * 3600.0


# Largest options sidecar (<file>.csv.json) read. Real options are a few hundred bytes; the cap
# stops a mistaken upload of a big file under that name from being parsed as JSON.
MAX_OPTIONS_BYTES = 64 * 1024

# Fetching a CSV from a URL: seconds without progress before giving up, redirects followed, and a
# whole-download deadline. 30 s covers a slow presigned-URL endpoint; 5 redirects is what browsers
# consider a loop long before; 15 min downloads the 512 MiB cap at under 1 MB/s.
URL_TIMEOUT_SECONDS = 30.0
URL_MAX_REDIRECTS = 5
URL_DEADLINE_SECONDS = 15 * 60
ALLOW_PRIVATE_URLS_ENV = "CONTACT_IMPORT_ALLOW_PRIVATE_URLS"

# `contact-import status --follow`: seconds between progress reads (a run's tags change at most a
# few times per batch, so 1 s looks live without loading the webserver), and how long to keep
# retrying while the webserver is unreachable (a restart takes ~20 s) before giving up.
STATUS_POLL_SECONDS = 1.0
STATUS_RECONNECT_SECONDS = 60.0

# Celery scale-out job (`import_job_celery`): broker and result backend, Redis database 0 of the
# local Redis (give the import its own database number when Redis is shared). Celery's own
# CELERY_BROKER_URL / CELERY_RESULT_BACKEND, when set, take precedence in the run process and in
# every worker alike (Celery reads them before its configuration).
DEFAULT_CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
