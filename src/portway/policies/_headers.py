"""Header name/value safety: nothing a policy writes may split a header or smuggle a new one."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

TOKEN_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
MAX_HEADER_VALUE = 8192


def is_header_name(name: str) -> bool:
    return TOKEN_RE.fullmatch(name) is not None


def is_safe_header_value(value: str) -> bool:
    """No CR, LF, NUL or other control characters (horizontal tab is allowed by RFC 9110), and
    only characters HTTP/1.1 can carry (Latin-1)."""
    if _UNSAFE_VALUE.search(value) is not None or len(value) > MAX_HEADER_VALUE:
        return False
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def clean_header_value(value: str) -> str:
    """A value computed at run time (a claim, a consumer name): control characters are dropped
    so a hostile token can never inject a header line, characters outside Latin-1 become '?',
    and the result is truncated to a sane size."""
    if value.isascii() and value.isprintable() and len(value) <= MAX_HEADER_VALUE:
        return value  # nothing to drop or replace (the common case: a name, a number)
    cleaned = _UNSAFE_VALUE.sub("", value)[:MAX_HEADER_VALUE]
    return cleaned.encode("latin-1", "replace").decode("latin-1")


def check_header_name(name: str) -> str:
    if not is_header_name(name):
        raise ValueError(f"{name!r} is not a valid header name")
    return name


def check_header_value(value: str) -> str:
    if not is_safe_header_value(value):
        raise ValueError(
            "header values must not contain control characters (CR, LF, NUL ...) "
            "or characters outside Latin-1"
        )
    return value


SafeHeaderValue = Annotated[str, AfterValidator(check_header_value)]
"""A config string that ends up in a header (a Content-Type, a mask): refused at save when it
could split or smuggle a header line."""
