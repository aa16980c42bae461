"""Progress stays right when batches finish out of order: batch 1 of 5 is held until the others land.

The run is the real multiprocess job (``execute_job`` in its own process); this test reads the run's
progress tags every 0.1 s while it runs, as the UI and ``contact-import status`` do.
"""

from __future__ import annotations

import itertools
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from contact_import_pipeline.defs.progress import read_progress
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_tests import faults
from contact_import_tests.helpers import phone_of, wait_until, write_numbered_csv

pytestmark = pytest.mark.slow

WORKSPACE = "order"
BATCH_SIZE, BATCHES = 200, 5
ROWS = BATCH_SIZE * BATCHES
COUNTS = ("processed", "imported", "skipped", "failed", "current_batch")


def test_progress_only_moves_forward_with_the_first_batch_landing_last(tmp_path: Path, pg_url: str) -> None:
    home = faults.make_home(tmp_path / "dagster_home")
    source = faults.file_entry(write_numbered_csv(tmp_path / "contacts.csv", 0, ROWS), WORKSPACE)
    ContactsStore(pg_url).create_schema()
    db = faults.engine(pg_url)
    token = uuid.uuid4().hex
    samples: list[dict] = []
    with dg.DagsterInstance.from_config(str(home)) as instance:

        def sample() -> dict:
            runs = faults.runs_with_token(instance, token)
            samples.append(read_progress(runs[0].tags) if runs else {})
            return samples[-1]

        def others_done() -> bool:
            """Batches 2-5 landed and their steps ended (progress moves inside a batch's transaction,
            before its step reports success), while batch 1 waits."""
            (run,) = faults.runs_with_token(instance, token)
            finished = faults.count_events(
                instance, run.run_id, dg.DagsterEventType.STEP_SUCCESS, faults.INSERT_STEP_PREFIX
            )
            return finished == BATCHES - 1 and faults.waiting_on_locks(db) == 1

        with faults.hold_phones(pg_url, [(WORKSPACE, phone_of(0))]):  # batch 0 waits on this row
            proc = faults.launch(home, pg_url, token, [source], BATCH_SIZE)
            try:
                wait_until(
                    lambda: sample().get("current_batch") == BATCHES - 1 and others_done(),
                    "batches 2-5 to land while batch 1 waits",
                )
                held = samples[-1]
            except BaseException:
                faults.kill_group(proc)
                raise
        while proc.poll() is None:
            sample()
            time.sleep(0.1)
        outcome = faults.finish(proc)
        sample()
        inserts = [
            e.step_key
            for e in faults.step_events(instance, outcome["run_id"])
            if e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS
            and e.step_key.startswith(faults.INSERT_STEP_PREFIX)
        ]
    db.dispose()

    print(f"\n{len(samples)} progress samples; insert steps finished in order {inserts}")
    assert outcome["success"]
    assert inserts[-1] == "contacts.insert_batch[batch_00000]" and len(inserts) == BATCHES
    assert {name: held[name] for name in COUNTS} == {
        "processed": ROWS - BATCH_SIZE,
        "imported": ROWS - BATCH_SIZE,
        "skipped": 0,
        "failed": 0,
        "current_batch": BATCHES - 1,
    }
    final = samples[-1]
    assert {name: final[name] for name in (*COUNTS, "status", "total", "total_batches")} == {
        "processed": ROWS,
        "imported": ROWS,
        "skipped": 0,
        "failed": 0,
        "current_batch": BATCHES,
        "status": "completed",
        "total": ROWS,
        "total_batches": BATCHES,
    }
    for before, after in itertools.pairwise(samples):
        assert all(after.get(name, 0) >= before.get(name, 0) for name in COUNTS), (before, after)
