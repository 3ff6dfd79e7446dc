"""A short `make chaos` (demo/chaos.py): its malformed requests against the service, its
malformed landing rows through ingest. (Its Redis faults are tested one by one in
tests/test_serving.py and tests/test_local_redis.py.)"""

from collections import Counter

import pytest
from fastapi.testclient import TestClient

from demo.chaos import malformed_bodies, malformed_landing
from riskcore.pan import find_pan
from serving.app import create_app
from tests.serving_env import API_KEY

pytestmark = pytest.mark.integration


def test_malformed_requests_get_no_5xx_and_no_card_number_back(env):
    good = [env.transaction(r["transaction_id"]) for r in env.served_rows().to_pylist()[:20]]
    good = [{k: v for k, v in body.items() if v is not None} for body in good]
    statuses: Counter = Counter()
    with TestClient(create_app(env.config()), raise_server_exceptions=False) as client:
        for k, (headers, raw) in enumerate(malformed_bodies(1200, good, API_KEY)):
            path = ("/score", "/score/batch", "/events")[k % 3]
            response = client.post(
                path, content=raw, headers=headers | {"content-type": "application/json"}
            )
            statuses[response.status_code] += 1
            assert not find_pan(response.text), response.text
    assert not any(status >= 500 for status in statuses), statuses
    assert statuses[422] > 1000 and statuses[401] > 0, statuses


def test_malformed_landing_rows_lose_no_good_row_and_keep_no_card_number(tmp_path):
    outcome = malformed_landing(3000, tmp_path)
    assert (outcome.lost_good_rows, outcome.pan_hits) == (0, 0), outcome
