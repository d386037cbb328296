"""The request's unit of work (`api.deps.SessionDep`) commits before the response is sent,
so a commit that fails answers a 500 and never follows a 2xx; a route that raises rolls
back and commits nothing.

The session is a stand-in that records what happens to it: the order of the commit and the
response's first message is FastAPI's doing (dependency scope), not the database's."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from api.deps import SessionDep
from api.errors import install_error_handlers
from domain.errors import DomainError


class RecordingSession:
    def __init__(self, log: list[str], *, commit_fails: bool = False) -> None:
        self._log = log
        self._commit_fails = commit_fails

    async def __aenter__(self) -> RecordingSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._log.append("close")

    async def commit(self) -> None:
        self._log.append("commit")
        if self._commit_fails:
            raise RuntimeError("the database went away during COMMIT")

    async def rollback(self) -> None:
        self._log.append("rollback")


def _app(log: list[str], *, commit_fails: bool = False) -> Any:
    app = FastAPI()
    install_error_handlers(app)
    app.state.sessions = lambda: RecordingSession(log, commit_fails=commit_fails)

    @app.post("/things", status_code=201)
    async def create(session: SessionDep) -> dict[str, str]:
        log.append("route")
        return {"id": "thing_1"}

    @app.post("/refused")
    async def refuse(session: SessionDep) -> dict[str, str]:
        log.append("route")
        raise DomainError("refused", "no", 409)

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                log.append(f"response {message['status']}")
            await send(message)

        await app(scope, receive, recording_send)

    return asgi


async def _post(app: Any, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.post(path)


async def test_commit_happens_before_the_response_is_sent() -> None:
    log: list[str] = []
    response = await _post(_app(log), "/things")
    assert response.status_code == 201
    assert log == ["route", "commit", "close", "response 201"]


async def test_a_failed_commit_answers_500_not_the_routes_2xx() -> None:
    log: list[str] = []
    response = await _post(_app(log, commit_fails=True), "/things")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "response 201" not in log
    assert log.index("commit") < log.index("response 500")


async def test_a_route_that_raises_rolls_back_and_commits_nothing() -> None:
    log: list[str] = []
    response = await _post(_app(log), "/refused")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "refused"
    assert "commit" not in log
    assert log.index("rollback") < log.index("response 409")


def test_routes_never_commit_and_sql_stays_in_db() -> None:
    """Routes leave transactions to the unit of work; only `db/` builds statements."""
    root = Path(__file__).resolve().parents[2]
    routes = [
        str(p.relative_to(root))
        for p in (root / "api" / "routes").glob("*.py")
        if re.search(r"\.(commit|rollback)\(", p.read_text())
    ]
    assert routes == []
    builds_sql = re.compile(
        r"^from (sqlalchemy|sqlmodel)(\.dialects\S*)? import "
        r".*\b(select|insert|update|delete|text)\b",
        re.M,
    )
    outside = [
        str(p.relative_to(root))
        for folder in ("api", "activities", "workflows", "domain", "recur_cli")
        for p in (root / folder).rglob("*.py")
        if builds_sql.search(p.read_text())
    ]
    assert outside == []
