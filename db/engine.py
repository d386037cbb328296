"""One async engine per process, and the session factory every caller uses.

Every engine is made with `hide_parameters=True`: a database error's message (and so its
traceback in a log) never lists the statement's bound values, which can be a webhook
signing secret, an email address or a Stripe payment-method id."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from config import get_settings


@lru_cache(maxsize=4)
def get_engine(url: str | None = None) -> AsyncEngine:
    """The API's pool. Sized for the requests one process serves at once: a connection
    beyond `pool_size` is opened for one request and closed after it (a connect per
    request under load)."""
    url = url or get_settings().effective_database_url
    return create_async_engine(
        url, pool_size=20, max_overflow=20, pool_pre_ping=True, hide_parameters=True
    )


@lru_cache(maxsize=4)
def get_worker_engine(url: str) -> AsyncEngine:
    """The worker's pool: no pre-ping. Every checkout would otherwise cost a round trip
    (about one statement in six of a renewal); a connection that died in the pool fails its
    statement instead, and what ran it tries again: Temporal retries the activity, the
    outbox dispatcher its delivery. Connections are recycled after 30 minutes."""
    return create_async_engine(
        url,
        pool_size=10,
        max_overflow=20,
        pool_pre_ping=False,
        pool_recycle=1800,
        hide_parameters=True,
    )


@lru_cache(maxsize=4)
def get_read_engine(url: str | None = None) -> AsyncEngine:
    """A second pool for single-statement hot reads (the entitlement check): autocommit, so a
    query is one round trip (no BEGIN, no ROLLBACK on release) and no pre-ping; callers retry
    once when a pooled connection turns out to be dead. A fixed size (no overflow): under a
    burst, requests queue for a connection instead of opening and closing extra ones."""
    url = url or get_settings().effective_database_url
    return create_async_engine(
        url,
        pool_size=20,
        max_overflow=0,
        isolation_level="AUTOCOMMIT",
        pool_recycle=1800,
        hide_parameters=True,
    )


def session_factory(engine: AsyncEngine | None = None) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine or get_engine(), class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session of `sessions` whose work commits when the block ends and rolls back if it
    raises (the rule of `db`)."""
    async with sessions() as session, session.begin():
        yield session


@asynccontextmanager
async def transaction(engine: AsyncEngine | None = None) -> AsyncIterator[AsyncSession]:
    """`unit_of_work` on a session of `engine` (default: the API's)."""
    async with unit_of_work(session_factory(engine)) as session:
        yield session
