"""Every error a client sees is an RFC 9457 problem (`application/problem+json`).

A problem has `type`, `title`, `status` and `detail`; a claim that cannot be used also lists
`problems`, each naming the JSON field path exactly as the CLI prints it (`lines[1].units`).
Unexpected exceptions are logged with their traceback and answered with a plain 500 problem
that carries an incident id to find the log entry: no traceback ever reaches a client.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.claims import ClaimError, Problem

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://policykb.invalid/problems/"  # names, not pages: `.invalid` never resolves
log = logging.getLogger("policykb.service")


class ProblemError(Exception):
    """Raise anywhere in a route to answer with this problem."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        problems: list[Problem] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.problems = problems or []
        self.headers = dict(headers) if headers else None
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            out["instance"] = instance
        if self.problems:
            out["problems"] = [{"field": p.field, "message": p.message} for p in self.problems]
        out.update(self.extra)
        return out


def claim_problem(exc: ClaimError) -> ProblemError:
    """A claim the parser refused: 400 when it is not JSON at all, else 422, with every problem."""
    malformed = any(p.field == "$" and p.message.startswith("malformed JSON") for p in exc.problems)
    if malformed:
        return ProblemError(
            400, "malformed-json", "The body is not valid JSON", exc.problems[0].message, problems=exc.problems
        )
    n = len(exc.problems)
    problem = ProblemError(
        422,
        "invalid-claim",
        "The claim cannot be adjudicated",
        f"{n} problem{'s' if n != 1 else ''} in the claim; each names its field",
        problems=exc.problems,
    )
    if exc.claim_id:
        problem.extra["claim"] = exc.claim_id
    return problem


def respond(problem: ProblemError, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(
        problem.body(instance), status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


_STATUS_TITLES = {
    400: ("bad-request", "Bad request"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("body-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def install(app: FastAPI) -> None:
    """Route every error through problem details."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return respond(exc, request)

    @app.exception_handler(ClaimError)
    async def _claim(request: Request, exc: ClaimError) -> JSONResponse:
        return respond(claim_problem(exc), request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [Problem(_loc(e.get("loc", ())), str(e.get("msg", "invalid"))) for e in exc.errors()]
        n = len(problems)
        return respond(
            ProblemError(
                422,
                "invalid-parameter",
                "A request parameter is not valid",
                f"{n} problem{'s' if n != 1 else ''} in the request parameters",
                problems=problems,
            ),
            request,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug, title = _STATUS_TITLES.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such resource: {request.url.path}"
        return respond(ProblemError(exc.status_code, slug, title, detail, headers=exc.headers), request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.error("incident %s: %s %s failed", incident, request.method, request.url.path, exc_info=exc)
        return respond(
            ProblemError(
                500,
                "internal-error",
                "Internal error",
                f"the service failed on this request; the log has the details under incident {incident}",
                incident=incident,
            ),
            request,
        )


def _loc(loc: tuple | list) -> str:
    """FastAPI's ('query', 'line') as the path a person reads: query.line."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


def problem_schema() -> dict[str, Any]:
    """The OpenAPI schema of a problem, shared by every error response."""
    return {
        "type": "object",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "claim": {"type": "string"},
            "incident": {"type": "string"},
            "suggestions": {"type": "array", "items": {"type": "string"}},
            "problems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field", "message"],
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }
