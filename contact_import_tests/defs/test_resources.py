"""defs.resources: the bucket the environment names, for the CLI and ``trigger`` as for runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from contact_import_pipeline.defs.resources import bucket_from_env
from contact_import_pipeline.errors import OptionsError
from contact_import_pipeline.storage.bucket import LocalFolderBucket, S3Bucket

KEY = "ws1/imports/people.csv"


def test_bucket_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CONTACT_BUCKET", raising=False)
    monkeypatch.setenv("CONTACT_BUCKET_DIR", str(tmp_path))
    local = bucket_from_env()
    assert isinstance(local, LocalFolderBucket) and local.root == str(tmp_path)
    monkeypatch.delenv("CONTACT_BUCKET_DIR")
    assert LocalFolderBucket().root == ".contact_import/bucket"
    monkeypatch.setenv("CONTACT_BUCKET", "s3")
    with pytest.raises(OptionsError, match="CONTACT_S3_BUCKET"):
        bucket_from_env()
    monkeypatch.setenv("CONTACT_S3_BUCKET", "crm")
    monkeypatch.setenv("CONTACT_S3_PREFIX", "uploads")
    monkeypatch.setenv("CONTACT_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    s3 = bucket_from_env()
    assert isinstance(s3, S3Bucket)
    assert (s3.bucket, s3.prefix, s3.endpoint_url, s3.region_name) == (
        "crm",
        "uploads",
        "http://127.0.0.1:9000",
        "eu-west-1",
    )
    assert s3.locator(KEY) == "s3://crm/uploads/ws1/imports/people.csv"
