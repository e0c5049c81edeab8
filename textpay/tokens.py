"""Random secrets handed to people, and how they are checked: one way for every kind.

Owns making a secret (`new`), the one form of it ever stored (`hash_token`: SHA-256, enough for
a value of 128 random bits or more, which no dictionary holds) and the comparison of a secret
someone offers with the one expected (`matches`: constant time, so response timing says nothing
about how much of a guess was right). Card links, their pages' CSRF values, operators' API
tokens and the console's CSRF values all use these.

Secrets people choose (operators' passwords, subscribers' passcodes) are few enough to guess
offline, so they are kept only as a salted scrypt hash (`slow_hash`) and checked with
`slow_matches`, which costs the same scrypt work when there is nothing to check against.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from functools import lru_cache

from werkzeug.security import check_password_hash, generate_password_hash

SLOW_HASH_METHOD = "scrypt"


def new(random_bytes: int = 32) -> str:
    """A URL-safe random secret of `random_bytes` bytes (32: 256 bits, 43 characters)."""
    return secrets.token_urlsafe(random_bytes)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def slow_hash(secret: str) -> str:
    """The only form a chosen secret is kept in: werkzeug's salted scrypt hash."""
    return generate_password_hash(secret, method=SLOW_HASH_METHOD)


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    return slow_hash(new())


def slow_matches(stored_hash: str | None, offered: str) -> bool:
    """Whether `offered` is the secret `stored_hash` was made from. Without a stored hash (no
    such operator, no passcode) a decoy is checked, so the answer takes as long either way."""
    if not stored_hash:
        check_password_hash(_decoy_hash(), offered)
        return False
    return check_password_hash(stored_hash, offered)


def matches(expected: str | None, offered: str | None) -> bool:
    """Whether `offered` is `expected`; never when either is missing or empty."""
    if not expected or not offered:
        return False
    return hmac.compare_digest(expected.encode(), offered.encode("utf-8", "replace"))
