"""storage.bucket: both backends behave the same: reads, writes, caps, options, archive, listing."""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from contact_import_pipeline.errors import CsvFileError, OptionsError
from contact_import_pipeline.keys import UnsafeKeyError
from contact_import_pipeline.storage.bucket import (
    TEMP_PREFIX,
    BucketError,
    ContactBucket,
    LocalFolderBucket,
    MissingObjectError,
    S3Bucket,
)
from contact_import_tests.s3_server import PAGINATION_KEYS, new_s3_bucket, s3_client

KEY = "ws1/imports/people.csv"
CSV = b"name,phone\nAda,+14155550100\n"


@pytest.fixture(params=["local", "s3", "s3-prefixed"])
def bucket(request, tmp_path) -> ContactBucket:
    if request.param == "local":
        return LocalFolderBucket(root=str(tmp_path / "bucket"))
    endpoint = request.getfixturevalue("s3_endpoint")
    return new_s3_bucket(endpoint, prefix="tenant-a" if request.param == "s3-prefixed" else "")


def test_write_read_exists_and_list(bucket: ContactBucket) -> None:
    assert not bucket.exists(KEY)
    locator = bucket.write_bytes(KEY, CSV)
    assert locator == bucket.locator(KEY)
    assert locator.endswith("ws1/imports/people.csv")
    assert bucket.exists(KEY)
    assert bucket.read_bytes(KEY, max_bytes=len(CSV)) == CSV
    bucket.write_bytes("ws2/imports/other.csv", b"x")
    listed = list(bucket.list_objects("ws1/"))
    assert [(o.key, o.size) for o in listed] == [(KEY, len(CSV))]
    assert sorted(o.key for o in bucket.list_objects()) == [KEY, "ws2/imports/other.csv"]
    assert listed[0].last_modified == pytest.approx(time.time(), abs=5)


def test_new_content_gets_a_new_version(bucket: ContactBucket) -> None:
    bucket.write_bytes(KEY, CSV)
    (first,) = bucket.list_objects()
    bucket.write_bytes(KEY, CSV + b"Bob,+14155550101\n")
    (second,) = bucket.list_objects()
    assert first.version != second.version


def test_size_cap_refuses_before_reading(bucket: ContactBucket) -> None:
    bucket.write_bytes(KEY, CSV)
    with pytest.raises(CsvFileError) as caught:
        bucket.read_bytes(KEY, max_bytes=len(CSV) - 1)
    assert str(caught.value).startswith(f"{KEY}: file is {len(CSV)} bytes, over the limit of {len(CSV) - 1} bytes")


def test_missing_file_is_named(bucket: ContactBucket) -> None:
    with pytest.raises(MissingObjectError, match=re.escape("ws1/imports/people.csv: not found")):
        bucket.read_bytes(KEY, max_bytes=100)


def test_options_sidecar(bucket: ContactBucket) -> None:
    bucket.write_bytes(KEY, CSV)
    assert bucket.read_options(KEY) == {}
    bucket.write_bytes(KEY + ".json", json.dumps({"import_tag": "spring", "region": "GB"}).encode())
    assert bucket.read_options(KEY) == {"import_tag": "spring", "region": "GB"}


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]"])
def test_malformed_sidecar_names_the_file(bucket: ContactBucket, body: bytes) -> None:
    bucket.write_bytes(KEY, CSV)
    bucket.write_bytes(KEY + ".json", body)
    with pytest.raises(OptionsError, match=r"ws1/imports/people\.csv\.json: options file"):
        bucket.read_options(KEY)


def test_archive_moves_file_and_sidecar_and_can_repeat(bucket: ContactBucket) -> None:
    bucket.write_bytes(KEY, CSV)
    bucket.write_bytes(KEY + ".json", b"{}")
    assert bucket.archive(KEY) == "ws1/imports/processed/people.csv"
    assert sorted(o.key for o in bucket.list_objects()) == [
        "ws1/imports/processed/people.csv",
        "ws1/imports/processed/people.csv.json",
    ]
    assert bucket.read_bytes("ws1/imports/processed/people.csv", 1000) == CSV
    assert bucket.archive(KEY) == "ws1/imports/processed/people.csv"  # a retried run
    with pytest.raises(MissingObjectError):
        bucket.archive("ws1/imports/never.csv")


def test_delete_removes_file_and_sidecar(bucket: ContactBucket) -> None:
    bucket.write_bytes(KEY, CSV)
    bucket.write_bytes(KEY + ".json", b"{}")
    bucket.write_bytes("ws1/imports/keep.csv", CSV)
    bucket.delete(KEY)
    bucket.delete(KEY)  # missing is fine
    assert [o.key for o in bucket.list_objects()] == ["ws1/imports/keep.csv"]


def test_s3_metadata_is_merged_under_the_sidecar(s3_endpoint: str) -> None:
    bucket = new_s3_bucket(s3_endpoint, prefix="p")
    s3_client(s3_endpoint).put_object(
        Bucket=bucket.bucket,
        Key=f"p/{KEY}",
        Body=CSV,
        Metadata={"import_tag": "from-meta", "board-phone-number": "+14155550199"},
    )
    assert bucket.read_options(KEY) == {"import_tag": "from-meta", "board_phone_number": "+14155550199"}
    bucket.write_bytes(KEY + ".json", b'{"import_tag": "from-sidecar"}')
    assert bucket.read_options(KEY) == {
        "import_tag": "from-sidecar",
        "board_phone_number": "+14155550199",
    }
    assert bucket.archive(KEY) == "ws1/imports/processed/people.csv"
    assert bucket.read_options("ws1/imports/processed/people.csv")["board_phone_number"] == "+14155550199"


def test_s3_listing_paginates_past_1000_keys(big_s3_bucket: S3Bucket) -> None:
    assert sorted(o.key for o in big_s3_bucket.list_objects()) == PAGINATION_KEYS


def test_s3_unreachable_endpoint_is_a_clear_error() -> None:
    bucket = S3Bucket(
        bucket="b",
        endpoint_url="http://127.0.0.1:9",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
    )
    with pytest.raises(BucketError, match=r"cannot list s3://b/ at http://127\.0\.0\.1:9: "):
        list(bucket.list_objects())


@pytest.mark.parametrize("key", ["../outside.csv", "ws1/imports/%2e%2e.csv", "ws1\\imports\\a.csv", "/etc/x"])
def test_local_refuses_unsafe_keys(tmp_path, key: str) -> None:
    bucket = LocalFolderBucket(root=str(tmp_path))
    with pytest.raises(UnsafeKeyError):
        bucket.write_bytes(key, b"x")
    with pytest.raises(UnsafeKeyError):
        bucket.read_bytes(key, 10)


def test_local_refuses_symlink_out_of_root(tmp_path) -> None:
    (tmp_path / "secret.txt").write_bytes(b"secret")
    root = tmp_path / "bucket"
    (root / "ws1" / "imports").mkdir(parents=True)
    os.symlink(tmp_path / "secret.txt", root / "ws1" / "imports" / "link.csv")
    with pytest.raises(BucketError, match="outside the bucket folder"):
        LocalFolderBucket(root=str(root)).read_bytes("ws1/imports/link.csv", 100)


def test_local_listing_skips_temp_files_and_writes_leave_none(tmp_path) -> None:
    bucket = LocalFolderBucket(root=str(tmp_path))
    bucket.write_bytes(KEY, CSV)
    assert sorted(os.listdir(tmp_path / "ws1" / "imports")) == ["people.csv"]
    (tmp_path / "ws1" / "imports" / f"{TEMP_PREFIX}abc").write_bytes(b"half")
    assert [o.key for o in bucket.list_objects()] == [KEY]
    (obj,) = bucket.list_objects()
    stat = (tmp_path / KEY).stat()
    assert obj.version == f"{stat.st_mtime_ns}-{stat.st_size}"
