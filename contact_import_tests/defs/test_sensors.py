"""defs.sensors: the new-file sensor, tick by tick, against a local folder and a real-HTTP S3 (moto);
and the run-failure sensor: a failed run ends with status=failed, its reason, its unfinished imports
``interrupted`` in the ledger, and a log line naming them."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from contact_import_pipeline.app.runner import ImportFailed, ImportRequest, run_import
from contact_import_pipeline.defs import launch, progress
from contact_import_pipeline.defs.definitions import defs
from contact_import_pipeline.defs.resources import ContactsDatabase
from contact_import_pipeline.defs.sensors import import_failure_sensor, new_files_sensor
from contact_import_pipeline.importing import stages
from contact_import_pipeline.settings import SensorSettings
from contact_import_pipeline.storage.bucket import BucketError, ContactBucket, LocalFolderBucket, S3Bucket
from contact_import_pipeline.storage.contacts import ContactsStore
from contact_import_pipeline.storage.ledger import Ledger
from contact_import_tests.helpers import as_resource
from contact_import_tests.s3_server import PAGINATION_KEYS, new_s3_bucket, s3_client

Put = Callable[[str, bytes], None]


# --- new_files_sensor -----------------------------------------------------------------------------


class Ticker:
    """Runs the sensor like the daemon does: each tick gets the cursor the previous one stored."""

    def __init__(self, bucket: ContactBucket) -> None:
        self.bucket = bucket
        self.cursor: str | None = None
        self.run_keys: list[str] = []
        self.requests: list[dg.RunRequest] = []
        self.warnings: list[str] = []
        self.instance = dg.DagsterInstance.ephemeral()

    def tick(self, bucket: ContactBucket | None = None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources={"bucket": as_resource(bucket or self.bucket)}
        )
        context.log.addHandler(_ListHandler(self.warnings, logging.WARNING))
        result = new_files_sensor(context)
        self.cursor = result.cursor
        self.run_keys += [request.run_key for request in result.run_requests]
        self.requests += result.run_requests
        return result

    def requested_keys(self) -> list[str]:
        """Every file key requested so far, sorted (a key requested twice appears twice)."""
        return sorted(key for request in self.requests for key in files_of(request))


def files_of(request: dg.RunRequest) -> list[str]:
    """The keys a run request imports, in its run config's order."""
    return [f["key"] for f in request.run_config["ops"]["raw_csv"]["config"]["files"]]


class _ListHandler(logging.Handler):
    """Collects a sensor's log lines from ``level`` up (its logger does not propagate to pytest's caplog)."""

    def __init__(self, sink: list[str], level: int) -> None:
        super().__init__(level)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


def put_local(root: Path, key: str, data: bytes, age: float = 60.0) -> None:
    """Write a file whose mtime is ``age`` seconds ago (older than the settle time)."""
    path = root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = time.time() - age
    os.utime(path, (stamp, stamp))


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path) -> tuple[ContactBucket, Put]:
    """A bucket and a function that uploads into it the way a user would."""
    if request.param == "local":
        return LocalFolderBucket(root=str(tmp_path)), lambda key, data: put_local(tmp_path, key, data)
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = new_s3_bucket(endpoint)
    client = s3_client(endpoint)
    return bucket, lambda key, data: client.put_object(Bucket=bucket.bucket, Key=key, Body=data)


def settle(ticker: Ticker) -> None:
    """One tick so local files are seen once; S3 files need none (their requests are kept)."""
    if isinstance(ticker.bucket, LocalFolderBucket):
        assert ticker.tick().run_requests == []


def test_request_lists_the_file_with_its_version_run_key_and_tags(backend) -> None:
    bucket, put = backend
    put("acme/imports/people.csv", b"phone\n1\n")
    ticker = Ticker(bucket)
    settle(ticker)
    result = ticker.tick()
    (request,) = result.run_requests
    (obj,) = list(bucket.list_objects())
    assert request.run_config == {
        "ops": {
            "raw_csv": {
                "config": {
                    "files": [
                        {"key": "acme/imports/people.csv", "version": obj.version, "uploaded_at": obj.last_modified}
                    ]
                }
            }
        },
        "execution": {"config": {"in_process": True}},
        "resources": {"io_manager": {"config": {"in_memory": True}}},
    }
    assert request.run_key == launch.run_key([("acme/imports/people.csv", obj.version)])
    assert request.tags == {
        "contact_import/origin": "sensor",
        "contact_import/files": "1",
        "contact_import/ws.acme": "acme",
        "contact_import/file.acme.imports.people.csv": "acme/imports/people.csv",
    }
    assert isinstance(ticker.tick().skip_reason, dg.SkipReason)
    assert ticker.run_keys == [request.run_key]


def test_small_files_share_runs_up_to_the_caps_and_a_large_file_runs_alone(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CONTACT_SENSOR_SMALL_FILE_BYTES", "1000")
    monkeypatch.setenv("CONTACT_SENSOR_MAX_FILES_PER_RUN", "3")
    monkeypatch.setenv("CONTACT_SENSOR_MAX_RUN_BYTES", "250")
    monkeypatch.setenv("CONTACT_STEP_PROCESSES_BYTES", "5000")  # the large file, exactly: a process per step
    uploads = [  # (workspace, name, bytes), in upload order
        ("ws0", "a0", 100),
        ("ws1", "b0", 100),
        ("ws2", "big", 5000),
        ("ws2", "c1", 10),
        ("ws0", "a1", 100),
        ("ws1", "b1", 10),
        ("ws3", "d0", 10),
        ("ws0", "a2", 60),
        ("ws3", "d1", 10),
        ("ws3", "d2", 10),
        ("ws3", "d3", 10),
    ]
    for age, (workspace, name, size) in zip(range(1000, 0, -10), uploads, strict=False):
        put_local(tmp_path, f"{workspace}/imports/{name}.csv", b"p" * size, age=age)
    ticker = Ticker(LocalFolderBucket(root=str(tmp_path)))
    settle(ticker)

    def names(requests: list[dg.RunRequest]) -> list[list[str]]:
        return [[key.rsplit("/", 1)[1][:-4] for key in files_of(r)] for r in requests]

    first = ticker.tick().run_requests
    # Each workspace gives one stretch in upload order: ws0 stops before a2 (250 bytes), ws2's big
    # file runs alone and its c1 waits for the next tick, ws3 stops at 3 files. Stretches share
    # runs up to 3 files and 250 bytes.
    assert names(first) == [["a0", "a1"], ["b0", "b1"], ["big"], ["d0", "d1", "d2"]]
    assert [r.run_config["execution"]["config"]["in_process"] for r in first] == [True, True, False, True]
    assert "resources" not in first[2].run_config  # a big file's steps run in processes of their own
    assert [int(r.tags["contact_import/files"]) for r in first] == [2, 2, 1, 3]
    assert {k for k in first[3].tags if k.startswith("contact_import/ws.")} == {"contact_import/ws.ws3"}
    assert names(ticker.tick().run_requests) == [["c1", "a2", "d3"]]
    assert ticker.tick().run_requests == []


def test_a_workspace_with_an_unfinished_run_waits_for_it(tmp_path) -> None:
    """Two runs of one workspace would race for its phones: its next files wait for the run to end."""
    put_local(tmp_path, "ws1/imports/a.csv", b"p\n1\n", age=100)
    put_local(tmp_path, "ws2/imports/b.csv", b"p\n2\n", age=90)
    ticker = Ticker(LocalFolderBucket(root=str(tmp_path)))
    busy = dg.DagsterRun(
        job_name="import_job",
        run_id="1" * 36,
        tags=launch.run_tags(["ws1/imports/old.csv"], "sensor"),
        status=dg.DagsterRunStatus.STARTED,
    )
    ticker.instance.add_run(busy)
    settle(ticker)
    assert [files_of(r) for r in ticker.tick().run_requests] == [["ws2/imports/b.csv"]]
    assert ticker.tick().run_requests == []  # ws1's run is still going
    ticker.instance.report_run_failed(ticker.instance.get_run_by_id(busy.run_id))
    assert [files_of(r) for r in ticker.tick().run_requests] == [["ws1/imports/a.csv"]]


def test_file_version_launched_by_trigger_is_not_requested_again(tmp_path) -> None:
    """`contact-import trigger` uploads and launches itself; the sensor must not launch it twice."""
    put_local(tmp_path, "acme/imports/a.csv", b"phone\n1\n")
    put_local(tmp_path, "acme/imports/b.csv", b"phone\n2\n")
    bucket = LocalFolderBucket(root=str(tmp_path))
    versions = {o.key: o.version for o in bucket.list_objects()}
    ticker = Ticker(bucket)
    ticker.instance.add_run(
        dg.DagsterRun(
            job_name="import_job",
            run_id="0" * 36,
            run_config=launch.run_config(
                [{"key": "acme/imports/a.csv", "version": versions["acme/imports/a.csv"]}], in_process=True
            ),
            tags=launch.run_tags(["acme/imports/a.csv"], "graphql"),
            status=dg.DagsterRunStatus.SUCCESS,
        )
    )
    settle(ticker)
    ticker.tick()
    assert ticker.requested_keys() == ["acme/imports/b.csv"]
    assert ticker.tick().run_requests == []
    assert json.loads(ticker.cursor)["requested"] == versions


def ticks_until_quiet(ticker: Ticker) -> list[int]:
    """Tick until a tick requests nothing; the number of runs each busy tick requested."""
    counts = []
    while runs := ticker.tick().run_requests:
        counts.append(len(runs))
    return counts


def test_1005_keys_each_requested_once_local(tmp_path) -> None:
    for key in PAGINATION_KEYS:
        put_local(tmp_path, key, b"p\n1\n")
    ticker = Ticker(LocalFolderBucket(root=str(tmp_path)))
    settle(ticker)
    assert ticks_until_quiet(ticker) == [1] * 6  # one workspace: 200 files a run, one run at a time
    assert ticker.requested_keys() == PAGINATION_KEYS


def test_1005_keys_each_requested_once_s3(big_s3_bucket: S3Bucket) -> None:
    ticker = Ticker(big_s3_bucket)
    assert ticks_until_quiet(ticker) == [1] * 6
    assert ticker.requested_keys() == PAGINATION_KEYS
    assert len(set(ticker.run_keys)) == 6


def test_oldest_files_first_and_the_rest_on_later_ticks(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CONTACT_SENSOR_MAX_RUNS_PER_TICK", "2")
    monkeypatch.setenv("CONTACT_SENSOR_MAX_FILES_PER_RUN", "10")
    keys = [f"ws{i % 3}/imports/f{i:03d}.csv" for i in range(60)]
    for age, key in zip(range(1000, 880, -1), keys, strict=False):  # f000 is the oldest
        put_local(tmp_path, key, b"p\n1\n", age=age)
    ticker = Ticker(LocalFolderBucket(root=str(tmp_path)))
    settle(ticker)
    ticks = [[files_of(r) for r in ticker.tick().run_requests] for _ in range(5)]
    by_workspace = [[keys[i] for i in range(60) if i % 3 == w] for w in range(3)]
    assert ticks == [
        [by_workspace[0][:10], by_workspace[1][:10]],
        [by_workspace[2][:10], by_workspace[0][10:]],
        [by_workspace[1][10:], by_workspace[2][10:]],
        [],
        [],
    ]


def test_ten_thousand_waiting_files_are_each_requested_once(tmp_path) -> None:
    keys = [f"ws{i % 50}/imports/f{i:05d}.csv" for i in range(10_000)]
    for key in keys:
        put_local(tmp_path, key, b"p\n1\n")
    ticker = Ticker(LocalFolderBucket(root=str(tmp_path)))
    settle(ticker)
    assert ticks_until_quiet(ticker) == [10] * 5  # 10 runs of one workspace's 200 files a tick
    assert ticker.requested_keys() == sorted(keys)


@pytest.mark.parametrize(
    "backend", ["local", pytest.param("s3", marks=pytest.mark.slow)], indirect=True
)  # 300 requests to moto take ~6 s
def test_same_second_uploads_around_ticks_are_never_missed(backend) -> None:
    bucket, put = backend
    ticker = Ticker(bucket)
    expected = []
    for pair in range(100):  # each pair lands within one second, with a tick in between
        first, second = f"ws1/imports/p{pair:03d}-a.csv", f"ws1/imports/p{pair:03d}-b.csv"
        put(first, b"p\n1\n")
        ticker.tick()
        put(second, b"p\n2\n")
        expected += [first, second]
    ticker.tick()
    ticker.tick()
    assert ticker.requested_keys() == sorted(expected)
    assert Counter(ticker.run_keys).most_common(1)[0][1] == 1


def test_unsafe_keys_are_refused_and_logged_once(s3_endpoint: str) -> None:
    bucket = new_s3_bucket(s3_endpoint)
    client = s3_client(s3_endpoint)
    unsafe = {
        "ws1/imports/../../ws2/imports/steal.csv": "'.' or '..' segment",
        "ws1/imports/%2e%2e.csv": "contains '\\' or '%'",
        "ws1/imports/a\\b.csv": "contains '\\' or '%'",
        "ws1/imports/tab\there.csv": "control character",
        "bad ws!/imports/a.csv": "workspace id 'bad ws!' is invalid",
        "ws1/imports/nested/a.csv": "not of the form <workspace_id>/imports/<name>.csv",
    }
    for key in [*unsafe, "ws1/imports/fine.csv"]:
        client.put_object(Bucket=bucket.bucket, Key=key, Body=b"p\n1\n")
    ticker = Ticker(bucket)
    result = ticker.tick()
    assert [files_of(r) for r in result.run_requests] == [["ws1/imports/fine.csv"]]
    assert len(ticker.warnings) == len(unsafe)
    for key, reason in unsafe.items():
        (message,) = [m for m in ticker.warnings if m.startswith(f"Refusing to import {key!r}")]
        assert reason in message
    assert ticker.tick().run_requests == []
    assert ticker.run_keys == [result.run_requests[0].run_key]
    assert len(ticker.warnings) == len(unsafe)  # not repeated on every tick


def test_unsafe_local_file_names_are_refused(tmp_path) -> None:
    put_local(tmp_path, "ws1/imports/100%.csv", b"p\n1\n")
    put_local(tmp_path, "ws1/imports/back\\slash.csv", b"p\n1\n")
    ticker = Ticker(LocalFolderBucket(root=str(tmp_path)))
    ticker.tick()
    ticker.tick()
    assert ticker.run_keys == []
    assert sorted(message.split(":")[0] for message in ticker.warnings) == [
        "Refusing to import 'ws1/imports/100%.csv'",
        "Refusing to import 'ws1/imports/back\\\\slash.csv'",
    ]


def test_derived_files_and_other_prefixes_are_ignored_silently(backend) -> None:
    bucket, put = backend
    for key in [
        "ws1/imports/processed/old.csv",
        "ws1/imports/rejects/old-rejects.csv",
        "ws1/imports/new.csv.json",
        "ws1/imports/notes.txt",
        "ws1/exports/a.csv",
        "readme.csv",
        "ws1/a.csv",
    ]:
        put(key, b"{}")
    ticker = Ticker(bucket)
    ticker.tick()
    ticker.tick()
    assert ticker.run_keys == []
    assert ticker.warnings == []


def test_new_content_runs_again_same_content_does_not(s3_endpoint: str) -> None:
    bucket = new_s3_bucket(s3_endpoint)
    client = s3_client(s3_endpoint)
    key = "ws1/imports/list.csv"
    client.put_object(Bucket=bucket.bucket, Key=key, Body=b"p\n1\n")
    ticker = Ticker(bucket)
    assert len(ticker.tick().run_requests) == 1
    client.put_object(Bucket=bucket.bucket, Key=key, Body=b"p\n1\n")  # same bytes again
    assert ticker.tick().run_requests == []
    client.put_object(Bucket=bucket.bucket, Key=key, Body=b"p\n1\n2\n")
    assert len(ticker.tick().run_requests) == 1
    assert len(set(ticker.run_keys)) == 2 and ticker.requested_keys() == [key, key]


def test_local_rewrite_runs_again_and_archived_files_leave_the_cursor(tmp_path) -> None:
    bucket = LocalFolderBucket(root=str(tmp_path))
    key = "ws1/imports/list.csv"
    put_local(tmp_path, key, b"p\n1\n", age=100)
    ticker = Ticker(bucket)
    settle(ticker)
    assert len(ticker.tick().run_requests) == 1
    assert ticker.tick().run_requests == []  # untouched file
    put_local(tmp_path, key, b"p\n1\n2\n", age=50)
    settle(ticker)
    assert len(ticker.tick().run_requests) == 1
    bucket.archive(key)
    ticker.tick()
    assert {k: v for k, v in json.loads(ticker.cursor).items() if k != "scanned_at"} == {
        "pending": {},
        "refused": {},
        "requested": {},
    }


def test_local_file_still_being_written_is_not_picked(tmp_path) -> None:
    ticker = Ticker(LocalFolderBucket(root=str(tmp_path)))
    path = tmp_path / "ws1" / "imports" / "big.csv"
    put_local(tmp_path, "ws1/imports/big.csv", b"phone\n1\n", age=30)
    assert ticker.tick().run_requests == []
    with path.open("ab") as handle:  # the copy goes on between ticks
        handle.write(b"2\n")
    os.utime(path, (time.time() - 20,) * 2)
    assert ticker.tick().run_requests == []
    path.write_bytes(b"phone\n1\n2\n3\n")  # unchanged size+mtime at the next tick, but just written
    assert ticker.tick().run_requests == []
    assert ticker.tick().run_requests == []  # stable now, yet younger than the settle time
    time.sleep(2.1)
    (request,) = ticker.tick().run_requests
    assert files_of(request) == ["ws1/imports/big.csv"]
    assert ticker.run_keys == [request.run_key]


def test_s3_outage_fails_ticks_without_losing_files(s3_endpoint: str) -> None:
    bucket = new_s3_bucket(s3_endpoint)
    client = s3_client(s3_endpoint)
    unreachable = dataclasses.replace(bucket, endpoint_url="http://127.0.0.1:9")
    ticker = Ticker(bucket)
    client.put_object(Bucket=bucket.bucket, Key="ws1/imports/before.csv", Body=b"p\n1\n")
    assert len(ticker.tick().run_requests) == 1
    cursor_before = ticker.cursor
    for n in range(3):
        client.put_object(Bucket=bucket.bucket, Key=f"ws1/imports/during-{n}.csv", Body=b"p\n1\n")
        with pytest.raises(BucketError, match=r"cannot list s3://.* at http://127\.0\.0\.1:9"):
            ticker.tick(unreachable)
        assert ticker.cursor == cursor_before
    assert len(ticker.tick().run_requests) == 1  # the three files uploaded during the outage share a run
    assert ticker.tick().run_requests == []
    assert ticker.requested_keys() == [
        "ws1/imports/before.csv",
        "ws1/imports/during-0.csv",
        "ws1/imports/during-1.csv",
        "ws1/imports/during-2.csv",
    ]


def test_unreadable_cursor_starts_afresh(tmp_path) -> None:
    put_local(tmp_path, "ws1/imports/a.csv", b"p\n1\n")
    ticker = Ticker(LocalFolderBucket(root=str(tmp_path)))
    ticker.cursor = "1700000000.0"  # e.g. a plain timestamp from an older sensor
    settle(ticker)
    assert [files_of(r) for r in ticker.tick().run_requests] == [["ws1/imports/a.csv"]]


# --- import_failure_sensor -------------------------------------------------------------------------

# Nothing listens on port 1: the contacts database "goes away" outside our own error handling.
UNREACHABLE_DB = "postgresql+psycopg://nobody@127.0.0.1:1/contacts"


def _failed_run(instance: dg.DagsterInstance, csv: Path, database_url: str) -> str:
    with pytest.raises(ImportFailed) as failed:
        run_import(ImportRequest(source=str(csv), workspace_id="acme"), database_url=database_url, instance=instance)
    return failed.value.run_id


def _evaluate(instance: dg.DagsterInstance, run_id: str, database_url: str) -> list[str]:
    """Run the sensor on the run's failure event like the daemon does; return its log lines."""
    (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    sensor_context = dg.build_sensor_context(
        instance=instance, resources={"contacts_db": ContactsDatabase(url=database_url)}
    )
    messages: list[str] = []
    sensor_context.log.addHandler(_ListHandler(messages, logging.INFO))
    context = dg.build_run_status_sensor_context(
        sensor_name=import_failure_sensor.name,
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        context=sensor_context,
    ).for_run_failure()
    import_failure_sensor(context, contacts_db=ContactsDatabase(url=database_url))
    return messages


def test_marks_the_unfinished_imports_of_a_crash_our_code_did_not_catch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("name,phone\nAda,+1 202 456 1414\n")
    database_url = f"sqlite:///{tmp_path / 'contacts.db'}"

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("planner crashed")

    monkeypatch.setattr(stages, "plan_batches", crash)  # a bug after the import was claimed
    with dg.instance_for_test() as instance:
        run_id = _failed_run(instance, csv, database_url)
        (entry,) = Ledger(ContactsStore(database_url)).entries(root_run_id=run_id)
        assert (entry.status, entry.error) == ("running", None)

        messages = _evaluate(instance, run_id, database_url)

        after = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert after["status"] == "failed"
        assert after["error"] == "step contacts.plan_batches failed: RuntimeError: planner crashed"
        (entry,) = Ledger(ContactsStore(database_url)).entries(root_run_id=run_id)
        assert (entry.status, entry.error) == ("interrupted", after["error"])
        assert messages == [
            f"contact import run {run_id} failed: {after['error']}; interrupted imports: acme/imports/people.csv"
        ]


def test_a_database_outage_is_still_marked_on_the_run(tmp_path: Path) -> None:
    csv = tmp_path / "people.csv"
    csv.write_text("name,phone\nAda,+1 202 456 1414\n")
    with dg.instance_for_test() as instance:
        run_id = _failed_run(instance, csv, UNREACHABLE_DB)
        before = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert before["status"] == "initializing" and "error" not in before

        messages = _evaluate(instance, run_id, UNREACHABLE_DB)

        after = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert after["status"] == "failed"
        assert after["error"].startswith("step raw_csv failed: ")
        assert "127.0.0.1" in after["error"] and "port 1" in after["error"]
        (line,) = messages
        assert line.startswith(
            f"contact import run {run_id} failed: {after['error']}; its imports could not be marked: "
        )


def test_keeps_the_reason_our_code_already_gave(tmp_path: Path) -> None:
    csv = tmp_path / "no-phone.csv"
    csv.write_text("name,email\nAda,ada@example.com\n")
    database_url = f"sqlite:///{tmp_path / 'contacts.db'}"
    with dg.instance_for_test() as instance:
        run_id = _failed_run(instance, csv, database_url)
        before = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert before["status"] == "failed" and "phone" in before["error"]

        messages = _evaluate(instance, run_id, database_url)

        after = progress.read_progress(instance.get_run_by_id(run_id).tags)
        assert (after["status"], after["error"]) == ("failed", before["error"])
        (entry,) = Ledger(ContactsStore(database_url)).entries(root_run_id=run_id)
        assert entry.status == "failed" and entry.error in before["error"]  # a file-level failure stays final
        assert messages == [
            f"contact import run {run_id} failed: {before['error']}; interrupted imports: none unfinished"
        ]


def test_is_on_by_default_and_watches_the_import_job() -> None:
    assert import_failure_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert defs.resolve_sensor_def(import_failure_sensor.name) is not None


@pytest.mark.parametrize(
    ("sizes", "one_process"),
    [
        ([100 * 2**20 - 1], True),  # a 1M-row export (~100 MB) runs in one process
        ([100 * 2**20], False),
        ([60 * 2**20, 40 * 2**20], False),  # several files count together
        ([10, 20], True),
        ([None], False),  # a URL of unknown size may be big
        ([10, None], False),
    ],
)
def test_a_run_executes_in_one_process_below_the_step_processes_size(sizes: list, one_process: bool) -> None:
    assert SensorSettings().in_one_process(sizes) is one_process
