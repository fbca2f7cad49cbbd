"""What AWS said, in words a platform engineer can act on.

Every failed AWS call ends here and leaves as a meshpipe error: bad local configuration (no region, no
credentials) is a :class:`UserError`; a thing that is not there is a :class:`NotFoundError`; anything AWS
refused or could not do is an :class:`OperationError` whose hint says what to change. A refusal that is
meshpipe's own fault (a capability it did not grant its stack) is a :class:`~meshpipe.errors.Defect`.
"""

from __future__ import annotations

import re

from meshpipe.engines.aws.clients import (
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
from meshpipe.errors import Defect, MeshpipeError, NotFoundError, OperationError, UserError

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException", "SlowDown",
})
ACCESS_DENIED_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedException",
    "AuthorizationError",
})
BAD_CREDENTIALS_CODES = frozenset({
    "InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch", "ExpiredToken",
    "ExpiredTokenException", "InvalidAccessKeyId", "RequestExpired",
})
NOT_FOUND_CODES = frozenset({
    "NotFoundException", "ResourceNotFoundException", "NoSuchBucket", "NoSuchKey", "StackNotFoundException",
    "PipelineNotFoundException", "PipelineExecutionNotFoundException", "RepositoryDoesNotExistException",
})

# Where the IAM action differs from "<service>:<Operation>" for the calls meshpipe makes.
IAM_ACTION_OVERRIDES = {
    ("s3", "ListObjectVersions"): "s3:ListBucketVersions",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "DeleteObjects"): "s3:DeleteObject and s3:DeleteObjectVersion",
}

CONFIGURE_CREDENTIALS = ("configure credentials with `aws configure` (or `aws sso login`), set AWS_PROFILE, "
                         "or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
CONFIGURE_REGION = "set AWS_REGION (or AWS_DEFAULT_REGION), or add `region = ...` to your AWS profile"
STACK_STATE_RE = re.compile(r"\b([A-Z_]+_(?:COMPLETE|FAILED|IN_PROGRESS))\b")


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


def is_not_found(exc: BaseException) -> bool:
    code = error_code(exc)
    if code in NOT_FOUND_CODES or code.endswith("NotFound"):
        return True
    return code == "ValidationError" and "does not exist" in error_message(exc)


# Where IAM's service prefix differs from the client's name.
IAM_SERVICE_PREFIXES = {"elbv2": "elasticloadbalancing"}


def iam_action(service: str, operation: str) -> str:
    prefix = IAM_SERVICE_PREFIXES.get(service, service)
    return IAM_ACTION_OVERRIDES.get((service, operation), f"{prefix}:{operation}")


def stack_state_advice(stack: str, status: str) -> str:
    """What to do about a stack left in ``status``."""
    if status == "ROLLBACK_COMPLETE" or status == "ROLLBACK_FAILED":
        return (f"the first creation of {stack} failed and was rolled back; a stack in this state can "
                "only be deleted: delete it (e.g. `meshpipe env delete ENV --engine aws` for an "
                "environment), fix the cause shown above and retry")
    if status == "UPDATE_ROLLBACK_FAILED":
        return ("finish the rollback first: "
                f"`aws cloudformation continue-update-rollback --stack-name {stack}` "
                "(skip the resources that cannot roll back if it fails again), then retry")
    if status == "DELETE_FAILED":
        return (f"look at the events of {stack} for the resource that could not be deleted, remove what "
                "blocks it (a non-empty bucket, a resource still in use), then delete again")
    if status.endswith("_IN_PROGRESS"):
        return f"another operation is running on {stack}; wait for it to finish and retry"
    return f"look at the events of {stack} in the CloudFormation console, fix the cause and retry"


def translate(exc: BaseException, service: str, operation: str) -> MeshpipeError:
    """The meshpipe error for an exception raised by an AWS call ``service:operation``."""
    if isinstance(exc, MeshpipeError):
        return exc
    if isinstance(exc, NoRegionError):
        return UserError("no AWS region is configured", hint=CONFIGURE_REGION)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return UserError(f"no usable AWS credentials were found ({exc})", hint=CONFIGURE_CREDENTIALS)
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        return OperationError(f"cannot reach AWS {service} ({exc})",
                              hint="check the network connection, any HTTPS proxy settings and the region")
    if isinstance(exc, ClientError):
        return _translate_client_error(exc, service, operation)
    if isinstance(exc, BotoCoreError):
        name = type(exc).__name__
        if name in {"ProfileNotFound", "InvalidRegionError", "UnknownRegionError"}:
            return UserError(str(exc), hint=f"{CONFIGURE_CREDENTIALS}; {CONFIGURE_REGION}")
        return OperationError(f"AWS {service} {operation} failed: {exc}")
    return OperationError(f"AWS {service} {operation} failed unexpectedly: {type(exc).__name__}: {exc}")


def _translate_client_error(exc: ClientError, service: str, operation: str) -> MeshpipeError:
    code = error_code(exc)
    message = error_message(exc)
    operation = getattr(exc, "operation_name", None) or operation
    action = iam_action(service, operation)
    if code == "InsufficientCapabilitiesException":
        raise Defect(f"CloudFormation needs a capability meshpipe did not grant: {message}") from exc
    if code in ACCESS_DENIED_CODES:
        return OperationError(f"AWS denied {action}: {message}",
                              hint=f"allow {action} for the identity meshpipe runs as "
                                   "(docs/aws.md lists the permissions an operator needs)")
    if code in BAD_CREDENTIALS_CODES:
        return UserError(f"AWS rejected the credentials ({code}: {message})", hint=CONFIGURE_CREDENTIALS)
    if code in THROTTLING_CODES:
        return OperationError(f"AWS is throttling {action} ({code})",
                              hint="wait a minute and retry; if it persists, ask for a higher API rate quota")
    if is_not_found(exc):
        return NotFoundError(message or f"{service} {operation}: not found")
    if code == "ValidationError":
        state = STACK_STATE_RE.search(message)
        if state and ("state" in message or "status" in message):
            stack = _stack_in(message)
            return OperationError(f"CloudFormation refused {operation}: {message}",
                                  hint=stack_state_advice(stack or "the stack", state.group(1)))
    if code in {"LimitExceededException", "ServiceQuotaExceededException", "TooManyBuckets"}:
        return OperationError(f"an AWS quota was reached during {action}: {message}",
                              hint="delete unused resources or request a quota increase, then retry")
    if code in {"ResourceInUseException", "ConflictException", "BucketNotEmpty"}:
        return OperationError(f"AWS refused {action} because something still uses the resource: {message}",
                              hint="remove what depends on it first (routes before versions, versions before "
                                   "pipelines), then retry")
    return OperationError(f"AWS {service} {operation} failed ({code}): {message}")


def _stack_in(message: str) -> str | None:
    match = re.search(r"[Ss]tack[: ]+\[?([A-Za-z][A-Za-z0-9-]*)\]?", message)
    return match.group(1) if match else None
