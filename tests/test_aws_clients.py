"""Where the AWS engine takes its region from."""

from __future__ import annotations

import pytest

from meshpipe.engines.aws.clients import SessionClientFactory


@pytest.fixture(autouse=True)
def no_aws_config(monkeypatch, tmp_path):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))


def test_aws_region_is_honoured(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert SessionClientFactory().region == "eu-west-1"


def test_aws_region_wins_over_the_default_region(monkeypatch):
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert SessionClientFactory().region == "eu-west-1"


def test_default_region_and_explicit_region(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert SessionClientFactory().region == "us-east-1"
    assert SessionClientFactory(region="ap-south-1").region == "ap-south-1"


def test_no_region_at_all():
    assert SessionClientFactory().region is None
