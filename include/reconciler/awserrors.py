"""AWS failures mapped to what the engine should do (retry or stop), with secrets scrubbed out."""

from __future__ import annotations

import re
from collections.abc import Iterable

from reconciler.core.errors import PermanentError, ReconcilerError, TemporaryError

__all__ = [
    "TEMPORARY_CODES",
    "PERMANENT_CODES",
    "THROTTLING_CODES",
    "AwsTemporaryError",
    "AwsPermanentError",
    "Scrubber",
    "translate",
    "is_temporary_code",
]

THROTTLING_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "EC2ThrottledException", "ProvisionedThroughputExceededException", "SlowDown",
    "BandwidthLimitExceeded", "PriorRequestNotComplete",
})

# Retry later: the service is busy, the resource is mid-transition, or AWS is eventually
# consistent (a just-created instance may be "not found" for a moment).
TEMPORARY_CODES = THROTTLING_CODES | frozenset({
    "InternalError", "InternalFailure", "InternalServerError", "ServerException",
    "ServiceUnavailable", "ServiceUnavailableException", "Unavailable", "RequestTimeout",
    "RequestTimeoutException", "IncorrectInstanceState", "IncorrectState",
    "InsufficientInstanceCapacity", "ScalingActivityInProgress", "ResourceInUse",
    "UpdateInProgressException", "ClusterContainsServicesException",
    "ClusterContainsTasksException", "InvalidInstanceID.NotFound", "DependencyViolation",
    "500", "502", "503", "504",
})

# Stop: retrying cannot help (bad input, no permission, bad credentials, wrong state for good).
PERMANENT_CODES = frozenset({
    "AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthFailure",
    "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException",
    "UnrecognizedClientException", "OptInRequired", "ValidationError", "ValidationException",
    "InvalidParameterValue", "InvalidParameterCombination", "InvalidParameterException",
    "MissingParameter", "InvalidAMIID.Malformed", "InvalidAMIID.NotFound",
    "InvalidSubnetID.NotFound", "InvalidInstanceType", "UnsupportedOperation",
    "AlreadyExists", "ClientException", "ClusterNotFoundException", "ServiceNotFoundException",
    "ServiceNotActiveException", "PlatformUnknownException",
})

_ACCESS_KEY = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b")
_URL_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SIGNATURE = re.compile(r"(Signature|Credential|X-Amz-Security-Token)=[^,&\s]+")


class AwsTemporaryError(TemporaryError):
    """A retryable AWS failure, with the AWS error code (``""`` for transport errors)."""

    def __init__(self, message: str, delay: float | None = None, code: str = "") -> None:
        super().__init__(message, delay)
        self.code = code

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.delay, self.code))


class AwsPermanentError(PermanentError):
    """A non-retryable AWS failure, with the AWS error code."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.code))


class Scrubber:
    """Removes credentials from any text before it leaves the adapter (errors, logs, reports)."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str | None]) -> None:
        self._secrets.update(s for s in secrets if s and len(s) >= 4)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        text = _URL_USERINFO.sub("***@", text)
        text = _SIGNATURE.sub(r"\1=***", text)
        return _ACCESS_KEY.sub("AKIA***", text)

    def __repr__(self) -> str:
        return f"Scrubber({len(self._secrets)} secrets)"


def is_temporary_code(code: str, status: int | None) -> bool:
    """The table first; unknown codes by HTTP status (429 and 5xx retry, other 4xx stop)."""
    if code in TEMPORARY_CODES or code.endswith(("Throttling", "ThrottlingException")):
        return True
    if code in PERMANENT_CODES:
        return False
    return status is not None and (status == 429 or status >= 500)


def translate(exc: BaseException, what: str, scrub: Scrubber) -> ReconcilerError:
    """The engine's error for a boto3/botocore exception raised while doing ``what``."""
    from botocore import exceptions as bce  # type: ignore[import-untyped]
    from botocore.parsers import ResponseParserError  # type: ignore[import-untyped]

    if isinstance(exc, ReconcilerError):
        return exc
    if isinstance(exc, bce.ClientError):
        return _client_error(exc, what, scrub)
    name = type(exc).__name__
    if isinstance(exc, (bce.HTTPClientError, bce.ConnectionError, ResponseParserError,
                        bce.WaiterError)):
        # resets, timeouts, refused connections, garbled bodies (moto's HTML 500 pages)
        return AwsTemporaryError(scrub(f"{what}: {name}: {_short(exc)}"), delay=None, code=name)
    if isinstance(exc, (bce.NoCredentialsError, bce.PartialCredentialsError,
                        bce.CredentialRetrievalError, bce.NoRegionError,
                        bce.ParamValidationError)):
        return AwsPermanentError(scrub(f"{what}: {name}: {_short(exc)}"), code=name)
    return AwsPermanentError(scrub(f"{what}: unexpected {name}: {_short(exc)}"), code=name)


def _client_error(exc: BaseException, what: str, scrub: Scrubber) -> ReconcilerError:
    response = getattr(exc, "response", {}) or {}
    error = response.get("Error", {}) or {}
    code = str(error.get("Code") or "Unknown")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    message = scrub(f"{what}: {code}: {_short(error.get('Message') or '')}")
    if is_temporary_code(code, status):
        delay = 1.0 if code in THROTTLING_CODES else None
        return AwsTemporaryError(message, delay=delay, code=code)
    return AwsPermanentError(message, code=code)


def _short(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit] + "..."
