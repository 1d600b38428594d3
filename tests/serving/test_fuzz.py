"""A bounded fuzz of the API from its own OpenAPI document (schemathesis): generated requests,
valid and invalid, against the real app on a materialized store. No request may get a 5xx, and
every status answered must be one the document declares for that operation.

`make test` sends 10 valid and 6 invalid requests per operation (145 in all);
SHOPFEAST_FUZZ_FULL=1 sends up to 25 and 15, the counts this fuzz ran with before it was
trimmed to keep the default suite near five minutes.

The operations are driven by Hypothesis directly: schemathesis's pytest plugin (`from_fixture`)
does not run under pytest 9.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from serving.app import create_app
from tests.support.serving_support import API_KEY, shared_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FUZZ_STREAM = "test:fuzz-events"
FULL = bool(os.environ.get("SHOPFEAST_FUZZ_FULL"))
# per operation; Hypothesis derandomized, so each run sends the same requests
EXAMPLES = {GenerationMode.POSITIVE: 25 if FULL else 10, GenerationMode.NEGATIVE: 15 if FULL else 6}
MIN_REQUESTS = 200 if FULL else 120  # 145 sent; /health has no inputs: one request, none invalid


@pytest.fixture(scope="module")
def api_schema(request, tmp_path_factory, redis_url, postgres_dsn):
    store = shared_store(request, tmp_path_factory, redis_url, postgres_dsn)
    mp = pytest.MonkeyPatch()
    store.apply_env(mp)  # while the app starts (schemathesis runs its lifespan)
    request.addfinalizer(mp.undo)
    # POST /events appends what passes its checks: to a stream of the test's own, removed after.
    stream = redis.Redis.from_url(store.redis_url)
    request.addfinalizer(lambda: stream.delete(FUZZ_STREAM))
    settings = store.settings(stream_redis_url=store.redis_url, stream_key=FUZZ_STREAM)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(settings))


def test_no_server_errors_and_only_declared_statuses(api_schema) -> None:
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    assert "POST /events" in [o.label for o in operations]
    for operation in operations:
        for mode, examples in EXAMPLES.items():

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case) -> None:
                response = case.call_and_validate(
                    headers={"X-API-Key": API_KEY},
                    checks=[not_a_server_error, status_code_conformance],
                )
                statuses[response.status_code] += 1

            try:
                fuzz()
            except Unsatisfiable:  # nothing to break in an operation without inputs (/health)
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert sum(statuses.values()) >= MIN_REQUESTS, statuses
    assert not [s for s in statuses if s >= 500], statuses
