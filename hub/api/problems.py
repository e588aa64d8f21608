"""Error answers: one exception, rendered as a FHIR OperationOutcome with a stable ``code``.

Handlers and the middleware raise ``ApiError``; the middleware turns it into the response, so every error
has the same JSON shape whatever raised it. Diagnostics never contain identifiers or names.
"""

from __future__ import annotations

from typing import Any

# HTTP status -> FHIR IssueType (http://hl7.org/fhir/issue-type)
_ISSUE_TYPE = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found", 405: "not-supported",
               413: "too-long", 429: "throttled", 501: "not-supported", 503: "transient"}
FHIR_JSON = "application/fhir+json"


class ApiError(Exception):
    """An answer other than 2xx: ``status``, a stable ``code`` (e.g. ``invalid-cccd``) and a sentence."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def operation_outcome(status: int, code: str, message: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": _ISSUE_TYPE.get(status, "exception"),
            "details": {"coding": [{"system": "urn:hssk:api-error", "code": code}], "text": code},
            "diagnostics": message,
        }],
    }


def unauthorized(code: str, message: str, *, invalid: bool) -> ApiError:
    """401 with the RFC 6750 challenge; ``invalid`` when a token was sent but is unknown or revoked."""
    challenge = 'Bearer realm="hssk"' + (', error="invalid_token"' if invalid else "")
    return ApiError(401, code, message, {"WWW-Authenticate": challenge})


def forbidden(scope: str) -> ApiError:
    return ApiError(403, "insufficient-scope", f"this token does not carry the scope {scope!r}",
                    {"WWW-Authenticate": f'Bearer realm="hssk", error="insufficient_scope", scope="{scope}"'})
