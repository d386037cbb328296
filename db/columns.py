"""Column helpers shared by the table modules."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, DateTime
from sqlmodel import Field


def utc(**kwargs: Any) -> Any:
    """A timezone-aware timestamp column (SQLModel's default drops the zone)."""
    return Field(sa_type=DateTime(timezone=True), **kwargs)


def json_field(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_type=JSON)
