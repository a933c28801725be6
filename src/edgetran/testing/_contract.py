"""The failure every contract check raises."""

from __future__ import annotations

import math
from typing import Any


class ContractError(AssertionError):
    """A plug-in breaks a clause of its family's written contract; the message names both."""


class Clauses:
    """``require(condition, clause, detail)`` for one plug-in: a failure names the plug-in,
    the clause it breaks and what was seen."""

    def __init__(self, family: str, subject: Any) -> None:
        self.prefix = f"{family} contract ({subject})"

    def require(self, condition: bool, clause: str, detail: str = "") -> None:
        if not condition:
            seen = f"; got {detail}" if detail else ""
            raise ContractError(f"{self.prefix}: {clause}{seen}")


def is_number(value: Any) -> bool:
    """A finite real number (a ``bool`` is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
