"""Which passwords are refused: too short, on the shipped common-password list, or containing the
username. The list is the 20,000 common passwords Django ships (lower-cased, deduplicated; created
by Royce Williams), read once on first use."""

from __future__ import annotations

import gzip
import unicodedata
from functools import cache
from pathlib import Path

MIN_LENGTH = 12
MIN_NAME_IN_PASSWORD = 3  # a one- or two-letter username would refuse half of all passwords
_LIST = Path(__file__).with_name("common-passwords.txt.gz")


def fold(text: str) -> str:
    """The comparison form of a name or password: NFKC, case-folded, NFKC again."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


@cache
def common_passwords() -> frozenset[str]:
    with gzip.open(_LIST, "rt", encoding="utf-8") as handle:
        return frozenset(fold(line.strip()) for line in handle if line.strip())


def password_problem(password: str, username: str) -> str | None:
    """Why ``password`` is refused for ``username``, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    folded = fold(password)
    if folded.strip() in common_passwords():
        return "is a commonly used password"
    name = fold(username)
    if len(name) >= MIN_NAME_IN_PASSWORD and name in folded:
        return "must not contain the username"
    return None
