"""Options given before the command (`recur --verbose subs list`), for every command."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Options:
    verbose: bool = False


OPTIONS = Options()
