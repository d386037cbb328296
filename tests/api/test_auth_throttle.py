"""The API-key cache is bounded, for verified and unknown keys apart (unknown ones briefly);
a client address that keeps failing authentication is answered 429 for a while, other
clients are not."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client

from api import auth
from api.app import create_app
from api.auth import KeyCache, Principal, Role, hash_key
from tests.conftest import ADMIN_KEY, Stack
from tests.helpers import ok

ClientFor = Callable[[str], httpx.AsyncClient]


@asynccontextmanager
async def _app(stack: Stack, temporal: Client, **settings: Any) -> AsyncIterator[FastAPI]:
    """An API of its own (its own key cache and throttle), with these settings."""
    app = create_app(stack.settings.model_copy(update=settings), temporal=temporal)
    async with app.router.lifespan_context(app):
        yield app


def _client(app: FastAPI, address: str, key: str = ADMIN_KEY) -> httpx.AsyncClient:
    """A client calling from `address`, authenticated with `key`."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(address, 40000)),
        base_url="http://recur.test",
        headers={"Authorization": f"Bearer {key}"},
    )


def _random_key() -> dict[str, str]:
    return {"Authorization": f"Bearer rk_prod_{secrets.token_urlsafe(24)}"}


async def test_the_key_cache_bounds_verified_and_unknown_keys_apart(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    async with _app(
        stack,
        temporal_client,
        api_key_cache_size=5,
        api_key_unknown_cache_size=7,
        auth_failure_limit=10_000,
    ) as app:
        cache = app.state.key_cache
        async with _client(app, "10.1.0.1") as api:
            keys = [
                ok(await api.post("/v1/api_keys", json={"role": "support"}), 201)["key"]
                for _ in range(8)
            ]
            for key in keys:
                answer = await api.get("/v1/plans", headers={"Authorization": f"Bearer {key}"})
                assert answer.status_code == 200, answer.text
            assert len(cache) == 5, "verified keys are cached, up to the bound"

            for _ in range(300):
                unknown = await api.get("/v1/plans", headers=_random_key())
                assert unknown.status_code == 401
            assert cache.unknown == 7, "unknown keys are remembered, up to their own bound"
            assert len(cache) == 5, "a flood of unknown keys evicts no verified one"
            assert (await api.get("/v1/plans")).status_code == 200


class _Lookups:
    """Stands in for the database: counts lookups, knows the keys in `known`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self.known: dict[str, Principal] = {}
        monkeypatch.setattr(auth, "lookup", self._lookup)

    async def _lookup(self, _session: object, digest: str) -> Principal | None:
        self.calls += 1
        return self.known.get(digest)

    @staticmethod
    @asynccontextmanager
    async def sessions() -> AsyncIterator[None]:
        yield None


async def test_an_unknown_key_is_looked_up_once_per_short_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = _Lookups(monkeypatch)
    cache = KeyCache(30, 10, unknown_ttl_seconds=0.3, max_unknown=10)
    for _ in range(5):
        assert await cache.resolve(db.sessions, "rk_prod_unknown") is None
    assert db.calls == 1, "a repeated unknown key is answered from the cache"
    assert cache.unknown == 1

    # Created meanwhile by another process: known once the short window has passed.
    db.known[hash_key("rk_prod_unknown")] = Principal("key_new", Role.PRODUCT)
    await asyncio.sleep(0.4)
    principal = await cache.resolve(db.sessions, "rk_prod_unknown")
    assert principal == Principal("key_new", Role.PRODUCT)
    assert db.calls == 2
    assert (cache.unknown, len(cache)) == (0, 1)


async def test_unknown_keys_are_bounded_and_never_evict_verified_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = _Lookups(monkeypatch)
    good = {f"rk_good_{n}": Principal(f"key_{n}", Role.SUPPORT) for n in range(3)}
    db.known = {hash_key(raw): principal for raw, principal in good.items()}
    cache = KeyCache(30, 2, unknown_ttl_seconds=30, max_unknown=4)
    for raw in good:
        assert await cache.resolve(db.sessions, raw) == good[raw]
    assert len(cache) == 2, "verified keys: the least recently used beyond 2 is dropped"
    for n in range(1_000):
        assert await cache.resolve(db.sessions, f"rk_guess_{n}") is None
    assert cache.unknown == 4
    assert len(cache) == 2
    calls = db.calls
    assert await cache.resolve(db.sessions, "rk_good_2") == good["rk_good_2"]
    assert db.calls == calls, "the verified key is still cached"

    cache.forget(hash_key("rk_guess_999"))
    assert cache.unknown == 3
    cache.forget()
    assert (cache.unknown, len(cache)) == (0, 0)


async def test_repeated_bad_keys_from_one_client_get_429_while_others_still_work(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    async with (
        _app(stack, temporal_client, auth_failure_limit=3, auth_failure_window_seconds=60) as app,
        _client(app, "10.2.0.1") as guesser,
        _client(app, "10.2.0.2") as honest,
    ):
        for _ in range(3):
            assert (await guesser.get("/v1/plans", headers=_random_key())).status_code == 401

        refused = await guesser.get("/v1/plans", headers=_random_key())
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "too_many_requests"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # A right key is not looked up either (not yet verified by this process) ...
        assert (await guesser.get("/v1/plans")).status_code == 429

        assert (await honest.get("/v1/plans")).status_code == 200
        assert (await honest.get("/v1/plans", headers=_random_key())).status_code == 401
        # ... once verified (another client used it), it works from the throttled address:
        # whoever shares that address with the guesser keeps working.
        assert (await guesser.get("/v1/plans")).status_code == 200
        assert (await guesser.get("/v1/plans", headers=_random_key())).status_code == 429


async def test_a_client_may_try_again_once_its_window_has_passed(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    async with (
        _app(stack, temporal_client, auth_failure_limit=2, auth_failure_window_seconds=1) as app,
        _client(app, "10.3.0.1") as api,
    ):
        for _ in range(2):
            assert (await api.get("/v1/plans", headers=_random_key())).status_code == 401
        assert (await api.get("/v1/plans", headers=_random_key())).status_code == 429
        await asyncio.sleep(1.2)
        assert (await api.get("/v1/plans", headers=_random_key())).status_code == 401
        assert (await api.get("/v1/plans")).status_code == 200


async def test_the_throttle_tracks_a_bounded_number_of_clients(
    app_client: httpx.AsyncClient, stack: Stack, temporal_client: Client
) -> None:
    async with _app(stack, temporal_client, auth_throttle_clients=10) as app:
        for n in range(50):
            async with _client(app, f"10.4.0.{n}") as api:
                assert (await api.get("/v1/plans", headers=_random_key())).status_code == 401
        assert len(app.state.auth_throttle) == 10
