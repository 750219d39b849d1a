"""Property-based tests of the API from its own OpenAPI document (Schemathesis).

For every operation Schemathesis generates requests from the schema (claims, codes, rule ids,
query flags) and checks each answer: never a 5xx, the status code and content type are ones
the document declares, and the body matches the declared schema. The budget is bounded
(a fixed number of examples per operation, no deadline) so it runs in the normal suite.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from engine.service.app import Service, create_app  # noqa: E402
from engine.service.config import ServiceConfig  # noqa: E402

EXAMPLES_PER_OPERATION = 25
SEEN: defaultdict[str, set[int]] = defaultdict(set)  # operation -> status codes answered
service = Service(ServiceConfig(workers=1))  # outlives the lifespan Schemathesis runs per test item
app = create_app(service=service)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schemathesis.serializer("application/edi-x12")
def _x12_text(_context, value):  # type: ignore[no-untyped-def]
    """An 837P body is text: send generated values as they are (the reader slot answers 415)."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


@pytest.fixture(scope="module", autouse=True)
def service_ready() -> Iterator[None]:
    """Load the KB and the worker before the first generated request, and stop them after."""
    service.start()
    assert service.catalog.load().result(timeout=180) is None
    deadline = time.monotonic() + 180
    while service.pool.ready < service.pool.size and time.monotonic() < deadline:
        time.sleep(0.1)
    yield
    service.close()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_answers_as_its_openapi_document_says(case) -> None:
    response = case.call_and_validate(
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    )
    SEEN[f"{case.method} {case.path}"].add(response.status_code)


def test_generated_requests_reached_the_engine() -> None:
    """Not only errors: generated claims were adjudicated and codes looked up (runs after the above)."""
    assert 200 in SEEN["POST /v1/adjudicate"] and 422 in SEEN["POST /v1/adjudicate"], SEEN
    assert 200 in SEEN["GET /v1/rules"] and 404 in SEEN["GET /v1/codes/{code}"], SEEN
