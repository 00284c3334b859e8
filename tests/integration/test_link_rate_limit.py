"""The limit on failed personal-link look-ups, through the real app: behind a proxy and without,
in memory and in a real Redis shared by two app instances (two gunicorn workers)."""
from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, date, datetime

import pytest
import redis
from sqlalchemy import select

from infra.settings import Settings
from tests.integration.conftest import berlin, seed_programme
from tests.support.servers import free_port
from web import create_app
from web.ratelimit import FailedLookupLimit
from workflow.cycles import get_programme, open_cycle
from workflow.models import Submission
from workflow.submissions import issue_link_token

LIMIT = 30


@pytest.fixture
def token(services):
    """A valid personal link of an open 2027 cycle."""
    seed_programme(services, partners=1)
    with services.database.unit_of_work() as uow:
        cycle = open_cycle(uow, get_programme(uow), 2027, now=berlin(date(2027, 2, 1), 7, 0),
                           opens_on=date(2027, 2, 1), due_on=date(2027, 4, 30))
        submission = uow.session.scalars(
            select(Submission).where(Submission.cycle_id == cycle.id)).one()
        link = issue_link_token(uow, submission, notification_id=None, now=datetime.now(UTC))
        uow.commit()
    return link


def app_with(services, monkeypatch, **env):
    """The app as an operator starts it: settings from the environment."""
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))
    return create_app(Settings.from_env(), services)


def client_address() -> str:
    """An address no other test (or run against the same Redis) has used."""
    raw = uuid.uuid4().bytes
    return f"10.{raw[0]}.{raw[1]}.{raw[2]}"


def guess(client, *, address="192.0.2.10", forwarded=None):
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    return client.get(f"/r/guess-{uuid.uuid4().hex}", headers=headers,
                      environ_base={"REMOTE_ADDR": address})


def test_the_31st_unknown_link_in_a_minute_gets_429_with_retry_after(services, monkeypatch,
                                                                       token):
    client = app_with(services, monkeypatch, TRUSTED_PROXIES=0).test_client()
    assert [guess(client).status_code for _ in range(LIMIT)] == [404] * LIMIT
    refused = guess(client)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "Zu viele Anfragen" in refused.get_data(as_text=True)
    with client.session_transaction() as session:
        session["lang"] = "en"
    assert "Too many requests" in guess(client).get_data(as_text=True)


def test_a_valid_link_opens_from_an_address_over_the_limit(services, monkeypatch, token):
    client = app_with(services, monkeypatch).test_client()
    for _ in range(LIMIT + 5):
        guess(client)
    assert guess(client).status_code == 429
    same_address = {"REMOTE_ADDR": "192.0.2.10"}
    assert client.get(f"/r/{token}", environ_base=same_address).status_code == 200
    assert client.get(f"/r/{token}/form", environ_base=same_address).status_code == 200
    assert guess(client).status_code == 429  # the valid link did not reset the count either


def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_on_its_own(
        services, monkeypatch, token):
    client = app_with(services, monkeypatch, TRUSTED_PROXIES=1).test_client()
    proxy = "172.18.0.2"  # every request reaches the app from the proxy
    # A guesser may send its own X-Forwarded-For; the proxy appends the address it saw, the only
    # one counted.
    statuses = [guess(client, address=proxy, forwarded=f"10.9.8.{n}, 198.51.100.7").status_code
                for n in range(LIMIT + 1)]
    assert statuses == [404] * LIMIT + [429]
    assert guess(client, address=proxy, forwarded="203.0.113.9").status_code == 404
    assert client.get(f"/r/{token}", headers={"X-Forwarded-For": "198.51.100.7"},
                      environ_base={"REMOTE_ADDR": proxy}).status_code == 200


def test_without_trusted_proxies_a_rotating_forwarded_header_does_not_escape_the_limit(
        services, monkeypatch, token):
    client = app_with(services, monkeypatch, TRUSTED_PROXIES=0).test_client()
    statuses = [guess(client, forwarded=f"198.51.100.{n}").status_code for n in range(LIMIT + 1)]
    assert statuses == [404] * LIMIT + [429]


def test_one_ipv6_client_cannot_rotate_through_its_own_block(services, monkeypatch, token):
    client = app_with(services, monkeypatch).test_client()
    statuses = [guess(client, address=f"2001:db8:1:2::{n:x}").status_code
                for n in range(LIMIT + 1)]
    assert statuses == [404] * LIMIT + [429]
    assert guess(client, address="2001:db8:1:3::1").status_code == 404  # the next /64 is another


def test_an_address_is_forgotten_when_its_window_is_over(services, monkeypatch, token):
    app = app_with(services, monkeypatch)
    # The app's own limit with a one-second window instead of sixty.
    limit = app.extensions["token_limit"] = FailedLookupLimit(
        Settings.from_env().ratelimit_storage_url, limit=3, seconds=1)
    client = app.test_client()
    for n in range(50):
        assert guess(client, address=f"198.18.0.{n}").status_code == 404
    assert [guess(client).status_code for _ in range(4)] == [404, 404, 404, 429]
    time.sleep(1.2)
    assert guess(client).status_code == 404
    # The memory table holds the client of the current window only, not the 50 earlier ones.
    deadline = time.monotonic() + 2
    while len(limit.storage.storage) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(limit.storage.storage) == 1 and len(limit.storage.expirations) == 1


def test_two_workers_share_one_count_in_redis(services, monkeypatch, token, redis_server):
    one = app_with(services, monkeypatch, RATELIMIT_STORAGE_URL=redis_server.url)
    two = create_app(Settings.from_env(), services)
    address = client_address()
    first, second = one.test_client(), two.test_client()
    for n in range(LIMIT):
        assert guess(first if n % 2 else second, address=address).status_code == 404
    assert guess(first, address=address).status_code == 429
    refused = guess(second, address=address)
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert second.get(f"/r/{token}", environ_base={"REMOTE_ADDR": address}).status_code == 200
    assert guess(second, address=client_address()).status_code == 404
    # Every counter in Redis expires with its window: nothing is kept for good.
    store = redis.Redis.from_url(redis_server.url)
    keys = list(store.scan_iter("LIMITS:*link-lookup*"))
    assert keys and all(0 < store.ttl(key) <= 60 for key in keys)
    store.close()


def test_a_redis_outage_leaves_unknown_links_at_404_and_valid_ones_open(
        services, monkeypatch, token, caplog):
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    client = app_with(services, monkeypatch, RATELIMIT_STORAGE_URL=nobody).test_client()
    with caplog.at_level(logging.WARNING, logger="web.ratelimit"):
        assert guess(client).status_code == 404
    assert "link rate limit storage unavailable" in caplog.text
    assert client.get(f"/r/{token}").status_code == 200
