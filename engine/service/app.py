"""The routes of `policykb serve`: the /v1 API, the OpenAPI document, offline docs, the page.

    app = create_app(ServiceConfig(workers=2))     # then uvicorn.run(app) or TestClient(app)

The KB loads in the background as soon as the app starts (or on the first request), so the
server listens at once and /v1/health says `starting` (503) until the KB and every worker are
ready. Adjudication and why-not run in the worker pool; rules and codes on the catalog thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from engine.claims import Claim, Problem
from engine.service import negotiation, schemas
from engine.service.catalog import PTP_STATUSES, Catalog, Page, unknown_rule
from engine.service.config import ServiceConfig
from engine.service.problems import PROBLEM_JSON, ProblemError, install, problem_schema
from engine.service.workers import WorkerPool

STATIC = Path(__file__).resolve().parent / "static"
API_VERSION = "1"
STARTUP_DELAY_SECONDS = 0.2


class Service:
    """What the routes share: config, the catalog (KB on a thread) and the worker pool."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.started = time.time()
        self.catalog = Catalog(config.kb_dir, config.cache_dir)
        kb_dir = str(config.kb_dir) if config.kb_dir else None
        cache_dir = str(config.cache_dir) if config.cache_dir else None
        self.pool = WorkerPool(config.workers, kb_dir, cache_dir)
        self._startup: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Load the KB, then start and warm the workers, off the event loop (idempotent)."""
        with self._lock:
            if self._startup is None:
                self.catalog.load()
                self._startup = threading.Thread(target=self._warm, name="policykb-start", daemon=True)
                self._startup.start()

    def _warm(self) -> None:
        assert self.catalog.loaded is not None
        if self.catalog.loaded.exception() is None:  # waits for the KB: workers start after its index is built
            self.pool.warm_blocking()

    async def kb(self) -> None:
        """Wait for the catalog's KB (workers read the tables only once it has set them up)."""
        self.start()
        await self.catalog.call(lambda _c: None)

    def close(self) -> None:
        self.pool.shutdown()
        self.catalog.shutdown()


def create_app(config: ServiceConfig | None = None, service: Service | None = None) -> FastAPI:
    """The app. Given a `service`, the caller owns it (tests share one KB and pool across
    apps and lifespans); otherwise the app starts one and stops it when the server stops."""
    owned = service is None
    service = service or Service(config or ServiceConfig())
    config = service.config

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Load the KB once the server is listening, not before: the loading thread competes for
        # the interpreter, and /v1/health should answer (`starting`) from the first moment.
        asyncio.get_running_loop().call_later(STARTUP_DELAY_SECONDS, service.start)
        yield
        if owned:
            service.close()

    app = FastAPI(
        title="PolicyKB",
        version=API_VERSION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Claim-line decisions with their reasons, proofs and remedies, from the "
        "PolicyKB knowledge base. Errors are RFC 9457 problem details.",
    )
    app.state.service = service
    install(app)
    _api_routes(app, service)
    _page_routes(app, service)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


# --- the API ------------------------------------------------------------------------------


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {
        s: {"description": _DESCRIPTIONS.get(s, "error"), "content": {PROBLEM_JSON: {"schema": _ref("Problem")}}}
        for s in statuses
    }
    out[500] = {
        "description": "internal error (logged with an incident id)",
        "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
    }
    return out


_DESCRIPTIONS = {
    400: "the body is not valid JSON or not UTF-8 text",
    404: "not found",
    406: "no acceptable answer format is served",
    413: "the body is over the size limit",
    415: "the claim's media type is not read",
    422: "the claim or a parameter is not valid, or the claim is over the line or unit limits",
    503: "the KB or the workers are not available",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(schema: str, media: str = "application/json") -> dict[int | str, dict[str, Any]]:
    return {200: {"description": "OK", "content": {media: {"schema": _ref(schema)}}}}


_CLAIM_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            negotiation.JSON: {"schema": _ref("Claim")},
            negotiation.FHIR_JSON: {"schema": {"type": "object", "description": "a FHIR R4 Claim resource"}},
            negotiation.X12: {"schema": {"type": "string", "description": "an X12 005010X222A1 837P interchange"}},
        },
    }
}


def _api_routes(app: FastAPI, service: Service) -> None:
    config = service.config

    @app.post(
        "/v1/adjudicate",
        summary="Decide every line of a claim",
        tags=["claims"],
        openapi_extra=_CLAIM_BODY,
        responses={**_ok("ClaimResult"), **_problems(400, 406, 413, 415, 422, 503)},
    )
    async def adjudicate(
        request: Request,
        proofs: Annotated[bool, Query(description="include the proof tree of every reason")] = False,
        remedies: Annotated[
            bool, Query(description="search for claim changes that would make each denied line pay")
        ] = False,
    ) -> Response:
        """Decide every line of a claim: decision, reasons with group/CARC/RARC, and on request
        proofs and remedies. The claim's format comes from `Content-Type` (or is detected), the
        answer's from `Accept`."""
        out = negotiation.renderer_for(request.headers.get("accept"))
        claim = await _read_claim(request, config)
        await service.kb()
        result = await service.pool.adjudicate(claim, proofs=proofs, remedies=remedies)
        assert out.renderer is not None
        return Response(out.renderer(claim, result), media_type=out.media_type)

    @app.post(
        "/v1/why-not",
        summary="Why a rule did not fire for a line",
        tags=["claims"],
        openapi_extra=_CLAIM_BODY,
        responses={**_ok("WhyNot"), **_problems(400, 404, 413, 415, 422, 503)},
    )
    async def why_not(
        request: Request,
        line: Annotated[int, Query(ge=1, description="the claim line number")],
        rule: Annotated[str, Query(min_length=1, description="a rule id, e.g. inj.facility_em")],
    ) -> JSONResponse:
        """Why a rule did not fire for a line: the first condition that failed, in words."""
        claim = await _read_claim(request, config)
        ids = await service.catalog.call(lambda c: c.rule_ids())
        if rule not in ids:
            raise unknown_rule(rule, ids)
        if all(ln.line != line for ln in claim.lines):
            have = ", ".join(str(ln.line) for ln in claim.lines)
            raise ProblemError(
                422,
                "unknown-line",
                "No such claim line",
                f"claim {claim.id} has no line {line}",
                problems=[Problem("query.line", f"no line {line}; the claim has lines {have}")],
            )
        answer = await service.pool.why_not(claim, line, rule)
        return JSONResponse({"claim": claim.id, "line": line, **answer})

    @app.get("/v1/rules", summary="List the rules", tags=["knowledge"], responses={**_ok("Rules"), **_problems(503)})
    async def rules() -> JSONResponse:
        """Every rule with an id: what it decides, its denial codes and its sources."""
        about, listed = await service.catalog.call(lambda c: (c.about(), c.rules()))
        return JSONResponse({"kb": about["version"], "rules": listed})

    @app.get(
        "/v1/rules/{rule_id}", summary="One rule", tags=["knowledge"], responses={**_ok("Rule"), **_problems(404, 503)}
    )
    async def rule(rule_id: Annotated[str, PathParam(description="a rule id, e.g. inj.facility_em")]) -> JSONResponse:
        """One rule: its annotations and every clause as written in the KB."""
        return JSONResponse(await service.catalog.call(lambda c: c.rule(rule_id)))

    @app.get(
        "/v1/codes/{code}",
        summary="What the KB knows of a code",
        tags=["knowledge"],
        responses={**_ok("Code"), **_problems(404, 422, 503)},
    )
    async def code(
        code: Annotated[str, PathParam(description="a CPT or HCPCS code", min_length=1, max_length=16)],
        offset: Annotated[int, Query(ge=0, le=10_000_000, description="PTP partners to skip")] = 0,
        limit: Annotated[int, Query(ge=1, le=500, description="PTP partners per direction")] = 50,
        status: Annotated[
            Literal["all", "active", "deleted"], Query(description="which PTP rows: " + ", ".join(PTP_STATUSES))
        ] = "all",
    ) -> JSONResponse:
        """What the KB knows of a code: description, category, ranges, MUE, add-on edits, fee
        schedule rows, and its PTP partners in both directions, a page at a time."""
        page = Page(offset, limit, status)
        return JSONResponse(await service.catalog.call(lambda c: c.code(code, page)))

    @app.get(
        "/v1/health",
        summary="Readiness, KB version and table vintages",
        tags=["service"],
        responses={
            200: {"description": "ready", "content": {"application/json": {"schema": _ref("Health")}}},
            503: {
                "description": "starting, or the KB failed to load",
                "content": {"application/json": {"schema": _ref("Health")}},
            },
        },
    )
    async def health() -> JSONResponse:
        """KB version, table vintages, workers and uptime; 503 until the KB and workers are ready."""
        service.start()
        body: dict[str, Any] = {
            "uptime_seconds": round(time.time() - service.started, 3),
            "started_at": datetime.fromtimestamp(service.started, UTC).isoformat(timespec="seconds"),
            "workers": {
                "configured": service.pool.size,
                "ready": service.pool.ready,
                "restarts": service.pool.restarts,
            },
            "limits": {
                "max_body_bytes": config.max_body_bytes,
                "max_lines": config.max_lines,
                "max_units": config.max_units,
            },
        }
        failure = service.catalog.failure
        if failure is not None:
            body.update(status="failed", detail=f"the KB failed to load: {type(failure).__name__}")
            return JSONResponse(body, status_code=503)
        if not service.catalog.ready:
            return JSONResponse({"status": "starting", **body}, status_code=503)
        about = await service.catalog.call(lambda c: c.about())
        about["load_seconds"] = service.catalog.load_seconds
        ready = service.pool.ready >= service.pool.size
        return JSONResponse(
            {"status": "ok" if ready else "starting", "kb": about, **body}, status_code=200 if ready else 503
        )


async def _read_body(request: Request, limit: int) -> str:
    """The body as text, refusing more than `limit` bytes before reading them all."""
    too_big = ProblemError(
        413,
        "body-too-large",
        "Request body too large",
        f"the body is over this service's limit of {limit:,} bytes",
        max_body_bytes=limit,
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    try:
        return b"".join(chunks).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ProblemError(
            400,
            "not-utf8",
            "The body is not UTF-8 text",
            f"byte {exc.start} is not valid UTF-8",
            problems=[Problem("$", "not UTF-8 text")],
        ) from None


async def _read_claim(request: Request, config: ServiceConfig) -> Claim:
    text = await _read_body(request, config.max_body_bytes)
    fmt = negotiation.reader_for(request.headers.get("content-type"), text)
    assert fmt.reader is not None
    claim = fmt.reader(text)  # ClaimError -> 400/422 problem with every field path
    _check_limits(claim, config)
    return claim


def _check_limits(claim: Claim, config: ServiceConfig) -> None:
    problems: list[Problem] = []
    if len(claim.lines) > config.max_lines:
        problems.append(Problem("lines", f"at most {config.max_lines} lines per claim here, got {len(claim.lines)}"))
    for i, ln in enumerate(claim.lines):
        if ln.units > config.max_units:
            problems.append(
                Problem(
                    f"lines[{i}].units",
                    f"line {ln.line}: at most {config.max_units} units per line here, got {ln.units}",
                )
            )
    if problems:
        raise ProblemError(
            422,
            "over-limit",
            "The claim is over this service's limits",
            f"{len(problems)} limit(s) exceeded",
            problems=problems,
            claim=claim.id,
        )


# --- the page, the docs and the reference site ---------------------------------------------


def _page_routes(app: FastAPI, service: Service) -> None:
    config = service.config
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    swagger = _swagger_dir()
    if swagger is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger), name="docs-assets")
    reference = config.reference
    if reference is not None:
        app.mount("/reference", StaticFiles(directory=reference, html=True), name="reference")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        if swagger is None:
            raise ProblemError(404, "not-found", "Not found", "Swagger UI's files are not installed (swagger-ui-py)")
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="PolicyKB API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/ui/config", include_in_schema=False)
    async def ui_config() -> JSONResponse:
        """What the page needs: the examples it offers and where the reference site is."""
        return JSONResponse(
            {
                "examples": sorted(_examples(config)),
                "reference": config.reference_base,
                "code_pages": _code_pages(config),
            }
        )

    @app.get("/ui/examples/{name}", include_in_schema=False)
    async def example(name: str) -> FileResponse:
        found = _examples(config).get(name)
        if found is None:
            raise ProblemError(404, "unknown-example", "Unknown example", f"no bundled example named {name!r}")
        return FileResponse(found, media_type="application/json")


def _examples(config: ServiceConfig) -> dict[str, Path]:
    folder = config.examples
    return {p.name: p for p in folder.glob("*.json")} if folder.is_dir() else {}


def _code_pages(config: ServiceConfig) -> list[str]:
    """Codes that have their own page on the reference site (others link to its code lookup)."""
    if config.reference is not None:
        return sorted(p.stem for p in (config.reference / "codes").glob("*.html") if p.stem not in ("index", "lookup"))
    built = config.kb_root.resolve().parent / "build" / "html" / "codes"  # `mkdocs build` generates the pages
    if built.is_dir():
        return sorted(p.stem for p in built.glob("*.html") if p.stem not in ("index", "lookup"))
    md = config.kb_root.resolve().parent / "site" / "codes"
    return sorted(p.stem for p in md.glob("*.md") if p.stem not in ("index", "lookup"))


def _swagger_dir() -> Path | None:
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with our schemas and every error answered as a problem."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components.update(schemas.COMPONENTS)
    components["Problem"] = problem_schema()
    for path in doc.get("paths", {}).values():
        for op in path.values():
            for status, resp in op.get("responses", {}).items():
                if (
                    status != "default"
                    and int(status) >= 400
                    and not (status == "503" and "Health" in json.dumps(resp))
                ):
                    resp["content"] = {PROBLEM_JSON: {"schema": _ref("Problem")}}
    app.openapi_schema = doc
    return doc
