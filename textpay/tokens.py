"""Random secrets handed to people, and how they are checked: one way for every kind.

Owns making a secret (`new`), the one form of it ever stored (`hash_token`: SHA-256, enough for
a value of 128 random bits or more, which no dictionary holds) and the comparison of a secret
someone offers with the one expected (`matches`: constant time, so response timing says nothing
about how much of a guess was right). Card links, their pages' CSRF values, operators' API
tokens and the console's CSRF values all use these.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets


def new(random_bytes: int = 32) -> str:
    """A URL-safe random secret of `random_bytes` bytes (32: 256 bits, 43 characters)."""
    return secrets.token_urlsafe(random_bytes)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def matches(expected: str | None, offered: str | None) -> bool:
    """Whether `offered` is `expected`; never when either is missing or empty."""
    if not expected or not offered:
        return False
    return hmac.compare_digest(expected.encode(), offered.encode("utf-8", "replace"))
