"""First-run data: the admin key from `RECUR_ADMIN_KEY` and a demo catalog."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import hash_key
from db.engine import transaction
from db.repositories import api_keys, plans

# Three membership tiers of a creator, each granting more features.
DEMO_PLANS = [
    {"id": "plan_demo_supporter", "name": "Supporter", "amount": 500, "features": ["posts"]},
    {
        "id": "plan_demo_insider",
        "name": "Insider",
        "amount": 1500,
        "features": ["posts", "archive", "discord"],
    },
    {
        "id": "plan_demo_patron",
        "name": "Patron",
        "amount": 5000,
        "features": ["posts", "archive", "discord", "merch", "live_qa"],
    },
]


async def ensure_admin_key(
    engine: AsyncEngine, raw_key: str, key_id: str = "key_admin_bootstrap"
) -> None:
    """Create (or re-point) the bootstrap admin key so `RECUR_ADMIN_KEY` always works."""
    async with transaction(engine) as session:
        await api_keys.ensure(
            session,
            key_id=key_id,
            name="bootstrap admin",
            role="admin",
            key_hash=hash_key(raw_key),
            prefix=raw_key[:12],
            now=datetime.now(UTC),
        )


async def seed_demo_catalog(engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    async with transaction(engine) as session:
        for plan in DEMO_PLANS:
            await plans.insert_missing(
                session,
                {
                    "currency": "usd",
                    "interval": "month",
                    "interval_count": 1,
                    "trial_days": 7,
                    "creator_id": "creator_demo",
                    "created_at": now,
                    **plan,
                },
            )
