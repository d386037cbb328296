"""Prefixed random ids (`cus_`, `plan_`, `sub_`, ...), minted outside workflows."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
