"""The one place meshpipe touches boto3 and botocore.

Everything else in the AWS engine receives clients from a :class:`ClientFactory`, so tests hand in
moto-backed or Stubber-backed clients and no test can reach real AWS by accident. The botocore exception
classes the engine needs to recognise are re-exported from here for the same reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)

__all__ = [
    "BotoCoreError",
    "ClientError",
    "ClientFactory",
    "ConnectTimeoutError",
    "CredentialRetrievalError",
    "EndpointConnectionError",
    "NoCredentialsError",
    "NoRegionError",
    "PartialCredentialsError",
    "ReadTimeoutError",
    "SessionClientFactory",
    "client_config",
    "iam_action",
]

# botocore's own retries absorb short bursts of throttling inside one call; the engine adds a bounded
# retry of its own around every call and every wait (see retry.py), so a long throttling spell is
# reported clearly instead of surfacing as a traceback.
BOTOCORE_MAX_ATTEMPTS = 5


def client_config() -> Config:
    return Config(
        retries={"mode": "standard", "max_attempts": BOTOCORE_MAX_ATTEMPTS},
        connect_timeout=10,
        read_timeout=60,
        user_agent_extra="meshpipe",
    )


# IAM actions whose name is not the API operation's (most are: "<signing name>:<operation>").
_IAM_ACTION_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "DeleteObjects"): "s3:DeleteObject",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject",
    ("s3", "CompleteMultipartUpload"): "s3:PutObject",
}


def iam_action(operation_model: Any) -> str:
    """The IAM action that authorizes a botocore operation: the service's signing name (its IAM prefix)
    and the operation name, except for the few operations IAM names otherwise."""
    service = operation_model.service_model
    prefix = service.signing_name or service.endpoint_prefix
    return _IAM_ACTION_EXCEPTIONS.get((prefix, operation_model.name), f"{prefix}:{operation_model.name}")


# Something told of every call a client makes: the IAM action it needs, and the call's parameters (which
# name the resources IAM authorizes it on).
CallObserver = Callable[[str, Mapping[str, Any]], None]


class ClientFactory(Protocol):
    """Makes (and may cache) one low-level client per AWS service name, e.g. ``"cloudformation"``."""

    def client(self, service: str) -> Any: ...


class SessionClientFactory:
    """Clients from a boto3 session: by default the environment's credentials, profile and region.

    Nothing is contacted and no credentials are read until the first client is made, so building an
    engine never fails; a missing region or missing credentials surface on first use and are turned
    into a :class:`~meshpipe.errors.UserError` by the engine's error mapping.
    """

    def __init__(self, session: Any | None = None, *, region: str | None = None,
                 profile: str | None = None, observer: CallObserver | None = None) -> None:
        self._session = session
        # Told the IAM action and parameters of every call before it is made (tests record what the engine
        # needs).
        self._observer = observer
        # AWS_REGION wins over AWS_DEFAULT_REGION, as in the AWS CLI; botocore itself reads only the latter.
        self._region = region or os.environ.get("AWS_REGION") or None
        self._profile = profile
        self._clients: dict[str, Any] = {}

    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = boto3.session.Session(profile_name=self._profile, region_name=self._region)
        return self._session

    @property
    def region(self) -> str | None:
        return self._region or self.session.region_name

    def client(self, service: str) -> Any:
        if service not in self._clients:
            client = self.session.client(service, region_name=self._region, config=client_config())
            if self._observer is not None:
                observer = self._observer

                def observe(model: Any, params: Mapping[str, Any] | None = None, **_: Any) -> None:
                    observer(iam_action(model), params or {})

                client.meta.events.register("provide-client-params.*.*", observe)
            self._clients[service] = client
        return self._clients[service]
