"""FastAPI dependencies: database session, Temporal client, Stripe, and the caller's key.

The unit of work (the one rule for transactions in the API): a request's work is the
transaction of its session, `SessionDep`. The dependency commits it when the route has
returned and rolls it back when the route raises; it is declared with scope "function", so
FastAPI runs that commit after the route function and before the response is sent (the exit
code of a dependency of the default scope "request" runs after the response went out: a
failed commit could follow a 2xx). tests/api/test_unit_of_work.py holds FastAPI to this.

Routes and repositories never commit. A service (`api/services/`, `api.lifecycle`,
`api.key_admin`, `api.reconcile`) that must make the work durable before it calls out of
the process (Temporal, Stripe, the key cache) commits the session it was given, says so in
its docstring, and leaves what it writes after the call to the dependency. The reservations
and answers of `Idempotency-Key` (`api.idempotency`) are short transactions of their own, by
design. Background loops (the sweepers) run each step in a `db.engine.unit_of_work` block,
or hand a session to such a service (`api.clock_advances.drive_advance`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client

from activities.stripe_gateway import StripeGateway
from api.auth import KeyCache, Principal, Role
from api.auth_throttle import AuthThrottle
from api.lifecycle import LifecycleCalls
from api.start_sweeper import StartSweeper
from config import Settings
from domain import errors


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessions  # type: ignore[no-any-return]


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed once the route has returned, rolled back if it
    raised (see the module's docstring)."""
    async with _sessions(request)() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


# Every dependency is `async def`: FastAPI runs a plain `def` dependency in a thread pool,
# a thread hand-off per request for what is an attribute read (measured: an eighth of the
# API's CPU on POST /v1/subscriptions).


async def get_temporal(request: Request) -> Client:
    client: Client | None = request.app.state.temporal
    if client is None:
        raise errors.TEMPORAL_UNAVAILABLE("Temporal is not reachable right now")
    return client


async def get_gateway(request: Request) -> StripeGateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_start_sweeper(request: Request) -> StartSweeper:
    return request.app.state.start_sweeper  # type: ignore[no-any-return]


# Declares the bearer scheme in the OpenAPI document (so /docs has "Authorize"); it never
# answers itself (auto_error=False): current_principal reads the header and answers our 401.
bearer = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="API key",
    description="An API key: `Authorization: Bearer rk_…`. Its role decides what it may do.",
    auto_error=False,
)


async def current_principal(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)] = None,
) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise errors.UNAUTHORIZED("Send an API key as 'Authorization: Bearer <key>'")
    cache: KeyCache = request.app.state.key_cache
    throttle: AuthThrottle = request.app.state.auth_throttle
    client = request.client.host if request.client else "unknown"
    # A throttled address may still use a key this process verified recently (the clients
    # sharing a proxy or NAT with a guesser keep working); anything else is not looked up.
    if (wait := throttle.retry_after(client)) is not None and cache.cached(raw.strip()) is None:
        raise errors.TOO_MANY_REQUESTS(
            f"Too many failed authentications from this address; retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    principal = await cache.resolve(_sessions(request), raw.strip())
    if principal is None:
        throttle.failed(client)  # a key was presented and is wrong: a guess, perhaps
        raise errors.UNAUTHORIZED("Unknown or revoked API key")
    request.state.principal = principal
    return principal


def require(*roles: Role) -> Callable[..., object]:
    """A dependency admitting the given roles (admin is always admitted)."""
    allowed = {Role.ADMIN, *roles}

    async def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if principal.role not in allowed:
            raise errors.FORBIDDEN(f"The {principal.role.value} role may not do this")
        return principal

    return check


# Scope "function": the commit runs before the response is sent (tests/api/test_unit_of_work.py).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
TemporalDep = Annotated[Client, Depends(get_temporal)]
GatewayDep = Annotated[StripeGateway, Depends(get_gateway)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def lifecycle_calls(
    request: Request, temporal: TemporalDep, settings: SettingsDep
) -> LifecycleCalls:
    return LifecycleCalls(temporal, settings, request.headers.get("idempotency-key"))


LifecycleDep = Annotated[LifecycleCalls, Depends(lifecycle_calls)]
StartsDep = Annotated[StartSweeper, Depends(get_start_sweeper)]
CurrentKey = Annotated[Principal, Depends(current_principal)]
AdminKey = Annotated[Principal, Depends(require())]
ProductKey = Annotated[Principal, Depends(require(Role.PRODUCT))]
SupportKey = Annotated[Principal, Depends(require(Role.SUPPORT))]
ProductOrSupportKey = Annotated[Principal, Depends(require(Role.PRODUCT, Role.SUPPORT))]
