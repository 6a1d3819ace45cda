"""Property-based: schemathesis generates requests from the running API's own OpenAPI document and sends them with
a valid system-scope service key: no 5xx, and every answer conforms to the document (status, content type, body,
headers); schema-invalid requests are refused with a 4xx, and a request without the key is refused. Schemathesis's
"positive data acceptance" check is left out: the ledger refuses some schema-valid values by its own rules (a zero
amount, text holding a NUL character, a date in the future), with a documented 4xx.

Driven with Hypothesis directly (one test per run over every operation), a few examples per operation so the whole
pass stays under a minute on two cores."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from world import auth, make_world

from billing_core import database

pytestmark = pytest.mark.slow
EXAMPLES_PER_OPERATION = 12
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance, checks.negative_data_rejection,
          checks.ignored_auth]


@pytest.fixture(scope="module")
def world(api_db_url):
    return make_world(database.get_engine(api_db_url))


def test_every_route_answers_within_its_schema(api_url, world):
    schema = schemathesis.openapi.from_url(f"{api_url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    failures = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_within_schema(case):
            case.call_and_validate(headers=auth(world.platform), checks=CHECKS)

        try:
            answers_within_schema()
        except Exception as exc:  # noqa: BLE001 -- collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
