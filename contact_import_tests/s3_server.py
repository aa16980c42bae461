"""A moto S3 server on 127.0.0.1 for tests that talk real HTTP to an S3 endpoint."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from moto.server import ThreadedMotoServer

from contact_import_pipeline.settings import BUCKET_ENV, S3_BUCKET_ENV, S3_ENDPOINT_ENV, S3_PREFIX_ENV
from contact_import_pipeline.storage.bucket import S3Bucket

# moto accepts any credentials; fixed ones keep boto3 from looking for real ones.
TEST_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
TEST_REGION = "us-east-1"


def start_s3_server() -> tuple[ThreadedMotoServer, str]:
    """Start moto on a free loopback port; return the server (to stop) and its endpoint URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint URL of one moto server shared by the test session (buckets keep tests apart)."""
    server, endpoint = start_s3_server()
    yield endpoint
    server.stop()


@functools.cache
def s3_client(endpoint: str):
    """A plain boto3 client (one per endpoint: building one takes ~0.5 s) on the test endpoint, for arranging objects the way an uploader would."""
    return boto3.client("s3", endpoint_url=endpoint, region_name=TEST_REGION, **TEST_CREDENTIALS)


def new_s3_bucket(endpoint: str, prefix: str = "") -> S3Bucket:
    """An S3Bucket resource on a freshly created, uniquely named bucket."""
    name = f"contacts-{uuid.uuid4().hex[:12]}"
    s3_client(endpoint).create_bucket(Bucket=name)
    return S3Bucket(bucket=name, prefix=prefix, endpoint_url=endpoint, region_name=TEST_REGION, **TEST_CREDENTIALS)


def s3_bucket_env(bucket: S3Bucket) -> dict[str, str]:
    """The environment under which ``bucket_from_env()`` is ``bucket``: for the processes a test
    starts (webserver, daemon, Celery workers), which build their bucket resource from it."""
    return {
        BUCKET_ENV: "s3",
        S3_BUCKET_ENV: bucket.bucket,
        S3_PREFIX_ENV: bucket.prefix,
        S3_ENDPOINT_ENV: bucket.endpoint_url or "",
        "AWS_REGION": bucket.region_name or TEST_REGION,
        "AWS_ACCESS_KEY_ID": TEST_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": TEST_CREDENTIALS["aws_secret_access_key"],
    }


# More keys than one list_objects_v2 page (1,000) holds.
PAGINATION_KEYS = [f"ws1/imports/f{i:04d}.csv" for i in range(1005)]


@pytest.fixture(scope="session")
def big_s3_bucket(s3_endpoint: str) -> S3Bucket:
    """A bucket (prefix "big") holding PAGINATION_KEYS, filled once: 1,005 PUTs take ~3 s."""
    bucket = new_s3_bucket(s3_endpoint, prefix="big")
    client = s3_client(s3_endpoint)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(lambda k: client.put_object(Bucket=bucket.bucket, Key=f"big/{k}", Body=b"p\n1\n"), PAGINATION_KEYS)
        )
    return bucket
