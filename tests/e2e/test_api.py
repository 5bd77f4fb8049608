"""The HTTP intake API as a real process against the real Postgres and Redis; schemathesis against its spec."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from orderrelay.config.settings import key_entry
from orderrelay.foundation.constants import Status
from orderrelay.sandbox.samples import TEST_CARD, chaiz_order
from orderrelay.sandbox.samples import extend_order as sample_order
from orderrelay.tools import embedded, processes
from tests.conftest import started, wait_until

pytestmark = pytest.mark.e2e
KEY = "api-test-key-0123456789"
OTHER = "api-test-other-producer-key-0123"
OPERATOR = "api-test-operator-key-0123456789"
SCRAPER = "api-test-metrics-key-0123456789"


@pytest.fixture(scope="module")
def api(service_env, logs):
    keys = [key_entry("shop", KEY), key_entry("other-shop", OTHER), key_entry("ops", OPERATOR, "operator")]
    keys.append(key_entry("scraper", SCRAPER, "metrics"))
    env = {**service_env, "ORDERRELAY_API_KEYS": ",".join(keys), "ORDERRELAY_API_MAX_BODY": "200000"}
    env["ORDERRELAY_BROKER_URL"] = env["ORDERRELAY_BROKER_URL"].rsplit("/", 1)[0] + "/12"  # no worker listens
    port = embedded.free_port()
    with started(processes.api(env, port, logs)) as proc:
        yield f"http://127.0.0.1:{port}"
    # (aiohttp logs its own parser's refusals of malformed headers with a traceback; those answer 400)
    assert "unexpected error on" not in proc.log(), proc.log()[-3000:]


def call(
    url: str,
    method: str = "GET",
    body=None,
    *,
    key: str | None = KEY,
    headers: dict | None = None,
    raw: bytes | None = None,
    content_type: str = "application/json",
):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    head = {"Content-Type": content_type, **({"Authorization": f"Bearer {key}"} if key else {}), **(headers or {})}
    request = urllib.request.Request(url, data=data, method=method, headers=head)
    try:
        with urllib.request.urlopen(request, timeout=20) as resp:
            return resp.status, dict(resp.headers), json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.load(exc)


def test_without_an_api_key_401(api, db):
    assert call(f"{api}/orders", key=None)[0] == 401
    assert call(f"{api}/orders", key="wrong-key-0123456789")[0] == 401
    from orderrelay import __version__

    assert call(f"{api}/healthz", key=None)[2] == {"ok": True, "postgres": "ok", "broker": "ok", "version": __version__}


def test_the_api_page_is_served_from_the_package_without_a_key(api):
    import urllib.request

    with urllib.request.urlopen(f"{api}/docs", timeout=5) as resp:
        page = resp.read().decode()
    assert resp.status == 200 and "SwaggerUIBundle" in page and "/openapi.json" in page
    assert "http" not in page.split("<body>")[1]  # nothing fetched from elsewhere: every file is the API's own
    for asset in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
        with urllib.request.urlopen(f"{api}{asset}", timeout=5) as resp:
            assert resp.status == 200 and len(resp.read()) > 10_000
    # the scheme is read whatever its case
    assert call(f"{api}/orders", key=None, headers={"Authorization": f"bearer {KEY}"})[0] == 200


def test_a_valid_job_is_taken_in_and_repeats_are_idempotent(api, db):
    job = {"provider": "extend", "order": sample_order("api-1"), "idempotency_key": "api-1"}
    status, headers, order = call(f"{api}/orders", "POST", job)
    assert status == 202
    assert headers["Location"] == f"/orders/{order['id']}"
    assert order["status"] == Status.QUEUED
    assert call(f"{api}/orders", "POST", job)[0:3:2] == (200, call(f"{api}/orders/{order['id']}")[2])
    other = {**job, "order": sample_order("api-1-other")}
    status, _, body = call(f"{api}/orders", "POST", other)
    assert (status, body["order_id"]) == (409, order["id"])
    by_header = {"provider": "extend", "order": sample_order("api-2")}
    status, _, second = call(f"{api}/orders", "POST", by_header, headers={"Idempotency-Key": "api-2"})
    assert (status, second["idempotency_key"]) == (202, "api-2")
    assert db.execute("SELECT count(*) AS n FROM orders").fetchone()["n"] == 2


def test_an_invalid_job_is_422_with_field_errors_and_recorded(api, db):
    bad = sample_order("api-bad", total=-1)
    status, _, body = call(f"{api}/orders", "POST", {"provider": "extend", "order": bad, "idempotency_key": "b"})
    assert status == 422
    assert list(body["errors"]) == ["order.total"]
    row = db.execute("SELECT status FROM orders WHERE id = %s", [body["order_id"]]).fetchone()
    assert row["status"] == Status.REJECTED


@pytest.mark.parametrize(
    ("raw", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"provider=extend", "application/x-www-form-urlencoded", 415),
        (b'{"provider": "extend", "order": {"x": "' + b"y" * 300_000 + b'"}}', "application/json", 413),
        (b"[1, 2, 3]", "application/json", 422),
    ],
)
def test_bad_bodies_get_clear_4xx(api, db, raw, content_type, status):
    code, _, body = call(f"{api}/orders", "POST", raw=raw, content_type=content_type)
    assert code == status
    assert body["error"]


def test_card_data_is_masked_when_read_back(api, db):
    job = {"provider": "chaiz", "order": chaiz_order(100), "idempotency_key": "api-card"}
    status, _, order = call(f"{api}/orders", "POST", job)
    assert status == 202
    shown = json.dumps(call(f"{api}/orders/{order['id']}")[2])
    assert TEST_CARD not in shown
    assert "**** 1111" in shown
    assert '"123"' not in shown


def test_list_filters_and_pages(api, db):
    for n in range(3):
        call(f"{api}/orders", "POST", {"provider": "extend", "order": sample_order(f"api-l{n}")})
    status, _, page = call(f"{api}/orders?provider=extend&status=queued&limit=2&offset=1")
    assert status == 200
    assert (len(page["orders"]), page["limit"], page["offset"]) == (2, 2, 1)
    assert call(f"{api}/orders?limit=0")[0] == 400
    assert call(f"{api}/orders?status=nonsense")[0] == 400


def test_cancel_and_retry(api, db):
    job = {"provider": "extend", "order": sample_order("api-c", transactionDelay=1)}
    _, _, order = call(f"{api}/orders", "POST", job)
    status, _, canceled = call(f"{api}/orders/{order['id']}/cancel", "POST")
    assert (status, canceled["status"]) == (200, Status.CANCELED)
    status, _, body = call(f"{api}/orders/{order['id']}/retry", "POST")
    assert status == 409
    assert "only failed or in_doubt" in body["error"]
    assert call(f"{api}/orders/{uuid.uuid4()}/cancel", "POST")[0] == 404
    assert call(f"{api}/orders/not-a-uuid")[0] == 404


def test_the_openapi_document_has_every_provider(api):
    spec = call(f"{api}/openapi.json", key=None)[2]
    bodies = spec["components"]["schemas"]["Job"]["properties"]["order"]["oneOf"]
    assert len(bodies) == 5
    assert "ChaizOrder" in spec["components"]["schemas"]


def test_schemathesis_finds_no_5xx_and_no_answer_off_the_spec(api, db, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{api}/openapi.json",
            "-H",
            f"Authorization: Bearer {KEY}",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "15",
            "--seed",
            "7",
            "--phases",
            "examples,fuzzing",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-5000:]
    assert "passed" in result.stdout


def test_the_python_producer_returns_the_order_id_at_once(service_env, db, monkeypatch, logs):
    from orderrelay import producer
    from orderrelay.config.settings import get_producer_settings

    monkeypatch.setenv("ORDERRELAY_BROKER_URL", service_env["ORDERRELAY_BROKER_URL"])
    get_producer_settings.cache_clear()
    producer.producer.cache_clear()
    with started(processes.worker(service_env, logs, name="producer-worker", concurrency=4)):
        order_id = producer.submit_order("extend", sample_order("api-py"), idempotency_key="api-py")
        keyless = producer.submit_order("extend", sample_order("api-py-2"))
        for expected in (order_id, keyless):
            wait_until(lambda e=expected: db.execute("SELECT status FROM orders WHERE id = %s", [e]).fetchone(), 20)
    assert producer.submit_order("extend", sample_order("api-py"), idempotency_key="api-py") == order_id


def scrape(url: str, key: str | None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_metrics_are_computed_from_postgres_for_an_operator_or_a_metrics_key_only(api, db, service_env, logs):
    call(f"{api}/orders", "POST", {"provider": "extend", "order": sample_order("api-m", transactionDelay=1)})
    status, text = scrape(f"{api}/metrics", SCRAPER)
    assert status == 200
    assert 'orderrelay_orders{provider="extend",status="waiting"} 1.0' in text
    assert "orderrelay_orders_waiting 1.0" in text
    assert "orderrelay_oldest_due_timestamp_seconds" in text
    assert [scrape(f"{api}/metrics", key)[0] for key in (None, KEY, OPERATOR)] == [401, 403, 200]
    assert call(f"{api}/orders", key=SCRAPER)[0] == 403  # a metrics key reads metrics and nothing else
    # Or, as a deployment may choose, on a listener of its own (127.0.0.1) that needs no key.
    port, metrics_port = embedded.free_port(), embedded.free_port()
    env = {**service_env, "ORDERRELAY_API_KEYS": key_entry("shop", KEY), "ORDERRELAY_METRICS_PORT": str(metrics_port)}
    with started(processes.api(env, port, logs)):
        assert scrape(f"http://127.0.0.1:{metrics_port}/metrics", None)[0] == 200
        assert scrape(f"http://127.0.0.1:{metrics_port}/orders", None)[0] == 404  # /metrics alone there
        assert scrape(f"http://127.0.0.1:{port}/metrics", None)[0] == 401


def test_a_producer_sees_and_acts_on_its_own_orders_only(api, db):
    job = {"provider": "extend", "order": sample_order("api-own"), "idempotency_key": "cart-1"}
    mine = call(f"{api}/orders", "POST", job)[2]["id"]
    theirs = call(f"{api}/orders", "POST", {**job, "order": sample_order("api-own-2")}, key=OTHER)
    assert theirs[0] == 202 and theirs[2]["id"] != mine  # the same key, another producer: another order
    for method, path in (("GET", ""), ("POST", "/cancel"), ("POST", "/retry")):
        status, _, body = call(f"{api}/orders/{mine}{path}", method, key=OTHER)
        assert (status, body["error"]) == (404, f"no order with id {mine}"), path
    listed = {o["id"] for o in call(f"{api}/orders", key=OTHER)[2]["orders"]}
    assert mine not in listed and theirs[2]["id"] in listed
    everything = {o["id"] for o in call(f"{api}/orders?limit=500", key=OPERATOR)[2]["orders"]}
    assert {mine, theirs[2]["id"]} <= everything
    assert call(f"{api}/orders/{mine}/cancel", "POST")[2]["status"] == Status.CANCELED


def test_a_blind_resend_is_an_operators_and_records_who_checked(api, db, runtime, sandbox):
    from orderrelay.core import pipeline

    plan = sandbox.admin("chaiz/plans", {})
    sandbox.script("chaiz", script=["drop_after_create"])
    step = pipeline.intake(
        runtime, {"provider": "chaiz", "order": chaiz_order(plan["searchResultPlanId"])}, producer="shop"
    )
    assert pipeline.place(runtime, step.order_id).status == Status.IN_DOUBT
    url = f"{api}/orders/{step.order_id}/retry"
    assert call(url, "POST")[0] == 409  # a producer's retry: refused, it would be blind
    assert call(url, "POST", {"checked_by": "Ada at support"})[0] == 403  # only an operator may say so
    assert call(url, "POST", key=OPERATOR)[0] == 409  # an operator too must say who checked
    status, _, body = call(url, "POST", {"checked_by": "Ada at support"}, key=OPERATOR)
    assert (status, body["status"]) == (200, Status.QUEUED)
    assert "Ada at support (operator key ops) checked with chaiz" in body["events"][-1]["reason"]


def test_the_idempotency_key_header_is_not_overridden_by_a_null_in_the_body(api, db):
    job = {"provider": "extend", "order": sample_order("api-hdr"), "idempotency_key": None}
    first = call(f"{api}/orders", "POST", job, headers={"Idempotency-Key": "hdr-1"})
    assert (first[0], first[2]["idempotency_key"]) == (202, "hdr-1")
    assert call(f"{api}/orders", "POST", job, headers={"Idempotency-Key": "hdr-1"})[0] == 200
    clash = call(f"{api}/orders", "POST", {**job, "idempotency_key": "other"}, headers={"Idempotency-Key": "hdr-1"})
    assert clash[0] == 400


def test_the_worst_inputs_get_a_422_with_the_field_errors_the_worker_gives(api, db, runtime):
    from kombu.utils.json import dumps, loads

    from orderrelay.core import pipeline
    from orderrelay.store import orders as store
    from orderrelay.tools.fuzz import worst

    for job in worst():
        status, _, body = call(f"{api}/orders", "POST", raw=dumps(job).encode())
        assert status == 422, (job, body)
        by_worker = pipeline.intake(runtime, loads(dumps(job)), message_id=str(uuid.uuid4()))
        assert body["errors"] == store.get_order(db, by_worker.order_id)["errors"], job
    deep = call(f"{api}/orders", "POST", raw=b"[" * 90_000 + b"]" * 90_000)  # past what any parser reads
    assert deep[0] == 422 and deep[2]["errors"] == {"_message": ["Not a readable JSON job: nested too deeply to read."]}
