"""One error hierarchy for dmrelay; every HTTP-facing error carries its status."""

from __future__ import annotations


class DmRelayError(Exception):
    """Base of every error dmrelay raises on purpose."""


class ConfigError(DmRelayError):
    """A configuration variable is missing or invalid."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


class LeaseLost(DmRelayError):
    """A worker's lease on a delivery is gone: its result is dropped.

    `holder` names the worker whose take holds the delivery now, or is None when none does
    (the lease was handed back: the delivery runs again).
    """

    def __init__(self, delivery_id: str, holder: str | None = None) -> None:
        super().__init__(delivery_id)
        self.delivery_id, self.holder = delivery_id, holder


class HttpError(DmRelayError):
    """An error answered to an HTTP client in the surface's documented shape."""

    status = 500
    title = "Internal Server Error"
    code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.body = body or {}  # fields added to DmTracker's {"error", "message"} shape


class BadRequest(HttpError):
    status, title, code = 400, "Bad Request", "BAD_REQUEST"


class Unauthorized(HttpError):
    status, title, code = 401, "Unauthorized", "UNAUTHORIZED"


class Forbidden(HttpError):
    status, title, code = 403, "Forbidden", "FORBIDDEN"


class NotFound(HttpError):
    status, title, code = 404, "Not Found", "RESOURCE_NOT_FOUND"


class UnsupportedMediaType(HttpError):
    status, title, code = 415, "Unsupported Media Type", "UNSUPPORTED_MEDIA_TYPE"


class Unprocessable(HttpError):
    status, title, code = 422, "Unprocessable Entity", "VALIDATION_FAILED"


class TooManyRequests(HttpError):
    status, title, code = 429, "Too Many Requests", "RATE_LIMITED"


class RateLimitExceeded(TooManyRequests):
    """A 429 worded as DmTracker words its own, with retry_after in the body and header."""

    title = "Rate limit exceeded"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(
            message,
            headers={"Retry-After": str(retry_after_seconds)},
            body={"retry_after": retry_after_seconds},
        )


class ServiceUnavailable(HttpError):
    status, title, code = 503, "Service Unavailable", "SERVICE_UNAVAILABLE"


class FieldError(HttpError):
    """A body field broke a documented rule; 400 or 422 as DmTracker answers it."""

    code = "VALIDATION_FAILED"

    def __init__(self, field: str, message: str, *, status: int = 400) -> None:
        super().__init__(f"The '{field}' field {message}")
        self.field = field
        self.status = status
        self.title = "Bad Request" if status == 400 else "Unprocessable Entity"
