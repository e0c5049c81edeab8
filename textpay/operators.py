"""Operators: the people who sign in to the console or call the admin API, their roles, their
passwords and their API tokens.

Owns the rules:

- Roles are ordered `viewer` < `agent` < `admin` (`allows`): a viewer reads; an agent also
  changes accounts and moves money (credits, usage, card refunds, scans); an admin also changes
  settings, facilities and operators.
- An email names one operator whatever its case (stored lower-cased). A new operator gets a
  random one-time password, returned once (`create_operator`) and stored only as a salted
  scrypt hash (`tokens.slow_hash`).
- Signing in (`sign_in`) answers the same `None` for an unknown email, a wrong password, a
  disabled operator and a locked one, after the same hashing work, so the answer says nothing
  about which emails exist. Five wrong passwords in a row lock the operator's sign-in for 15
  minutes.
- An API token is `tpo_` and 256 random bits, returned once (`mint_token`); only its SHA-256 is
  kept. `authenticate_token` finds the operator behind a token (none when it is revoked or the
  operator disabled) and refreshes its `last_used_at` at most once a minute, so a script
  calling many times a second does not write a row each time.
- Creating and disabling operators, minting and revoking tokens are audited; the trail never
  holds a password, a hash or a token.

Pure database work: no Flask. Callers open the transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from textpay import audit, tokens
from textpay.errors import Conflict, NotFound, ValidationFailed
from textpay.models import Operator, OperatorRole, OperatorToken

RANK = {OperatorRole.VIEWER: 0, OperatorRole.AGENT: 1, OperatorRole.ADMIN: 2}
SIGN_IN_LIMIT = 5  # wrong passwords in a row before sign-in locks
LOCK_OUT = timedelta(minutes=15)
LAST_USED_EVERY = timedelta(minutes=1)
TOKEN_PREFIX = "tpo_"  # noqa: S105 (how a token starts, not a token)
PASSWORD_BYTES = 12  # a 16-character one-time password: 96 random bits


@dataclass(frozen=True)
class SignedIn:
    """An operator as the web edge keeps it for a request: no password hash, no session."""

    id: int
    email: str
    name: str
    role: OperatorRole
    session_generation: int = 0

    @property
    def actor(self) -> str:
        return actor_of(self.email)

    def allows(self, needed: OperatorRole) -> bool:
        return allows(self.role, needed)


def allows(role: str, needed: OperatorRole) -> bool:
    """Whether `role` may do what needs `needed` (an unknown role may do nothing)."""
    try:
        return RANK[OperatorRole(role)] >= RANK[needed]
    except ValueError:
        return False


def actor_of(email: str) -> str:
    """The audit trail's name for an authenticated operator (the actor column holds 100)."""
    return f"operator:{email}"[:100]


def normalize_email(email: str) -> str:
    return email.strip().lower()


def signed_in(operator: Operator) -> SignedIn:
    assert operator.id is not None
    return SignedIn(operator.id, operator.email, operator.name, OperatorRole(operator.role),
                    operator.session_generation)  # fmt: skip


def operator_json(operator: Operator, *, now: datetime) -> dict[str, Any]:
    """What the admin API and the audit trail show of an operator (never the password hash)."""
    return {
        "id": operator.id,
        "email": operator.email,
        "name": operator.name,
        "role": operator.role,
        "locked": operator.locked_until is not None and operator.locked_until > now,
        "created_at": operator.created_at.isoformat(),
        "disabled_at": operator.disabled_at.isoformat() if operator.disabled_at else None,
    }


def token_json(token: OperatorToken) -> dict[str, Any]:
    """What is shown of a token after it is minted: never the token, nor its hash."""
    return {
        "id": token.id,
        "operator_id": token.operator_id,
        "name": token.name,
        "created_at": token.created_at.isoformat(),
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
    }


def find_by_email(session: Session, email: str) -> Operator | None:
    found = session.exec(select(Operator).where(Operator.email == normalize_email(email)))
    return found.first()


def get_operator(session: Session, operator_id: int) -> Operator:
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise NotFound(f"operator {operator_id} not found")
    return operator


def create_operator(
    session: Session, email: str, *, role: str, name: str = "", actor: str, now: datetime
) -> tuple[Operator, str]:
    """A new operator and its one-time password (the only time the password exists)."""
    email = normalize_email(email)
    try:
        role = OperatorRole(role).value
    except ValueError:
        raise ValidationFailed.single("role", "must be viewer, agent or admin") from None
    if find_by_email(session, email) is not None:
        raise Conflict(f"an operator with email {email} already exists")
    password = tokens.new(PASSWORD_BYTES)
    operator = Operator(
        email=email,
        name=name.strip(),
        role=role,
        password_hash=tokens.slow_hash(password),
        created_at=now,
    )
    session.add(operator)
    session.flush()
    audit.record(session, actor=actor, action="operator.create", entity_type="operator",
                 entity_id=operator.id, before=None, after=operator_json(operator, now=now),
                 now=now)  # fmt: skip
    return operator, password


def list_operators(session: Session) -> list[Operator]:
    return list(session.exec(select(Operator).order_by(col(Operator.id))))


def disable_operator(session: Session, operator: Operator, *, actor: str, now: datetime) -> None:
    """Disable `operator` (at once: its tokens and console session stop working). Disabling a
    disabled operator changes nothing."""
    if operator.disabled_at is not None:
        return
    before = operator_json(operator, now=now)
    operator.disabled_at = now
    session.add(operator)
    audit.record(session, actor=actor, action="operator.disable", entity_type="operator",
                 entity_id=operator.id, before=before, after=operator_json(operator, now=now),
                 now=now)  # fmt: skip


def sign_in(session: Session, email: str, password: str, *, now: datetime) -> Operator | None:
    """The operator `email` and `password` sign in, or None (the same None for every reason).

    A wrong password for an operator who is not locked counts towards the lock-out; the fifth
    in a row locks sign-in for `LOCK_OUT`. A right one resets the count."""
    operator = find_by_email(session, email)
    usable = (
        operator is not None
        and operator.disabled_at is None
        and (operator.locked_until is None or operator.locked_until <= now)
    )
    if operator is None or not usable:
        tokens.slow_matches(None, password)  # an unknown email costs the same scrypt work
        return None
    assert operator.id is not None
    if tokens.slow_matches(operator.password_hash, password):
        if operator.failed_sign_ins or operator.locked_until is not None:
            operator.failed_sign_ins = 0
            operator.locked_until = None
            session.add(operator)
        return operator
    # Counted in the database, so two wrong guesses at once both count.
    session.execute(
        update(Operator)
        .where(col(Operator.id) == operator.id)
        .values(failed_sign_ins=col(Operator.failed_sign_ins) + 1)
    )
    session.refresh(operator)
    if operator.failed_sign_ins >= SIGN_IN_LIMIT:
        operator.failed_sign_ins = 0
        operator.locked_until = now + LOCK_OUT
        session.add(operator)
    return None


def current(session: Session, operator_id: int, generation: int = 0) -> SignedIn | None:
    """The operator a console session names, while it may still act: not disabled, and not
    signed out since the session began (`generation`: the one it signed in under)."""
    operator = session.get(Operator, operator_id)
    if operator is None or operator.disabled_at is not None:
        return None
    if operator.session_generation != generation:
        return None
    return signed_in(operator)


def sign_out(session: Session, operator_id: int) -> None:
    """End every console session of the operator's (this browser's and any copy of its
    cookie): the sessions carry the generation they signed in under."""
    session.execute(
        update(Operator)
        .where(col(Operator.id) == operator_id)
        .values(session_generation=col(Operator.session_generation) + 1)
        .execution_options(synchronize_session=False)
    )


def mint_token(
    session: Session, operator: Operator, name: str, *, actor: str, now: datetime
) -> tuple[OperatorToken, str]:
    """A new API token for `operator`, and the token itself (shown once, never stored)."""
    if operator.disabled_at is not None:
        raise Conflict(f"operator {operator.id} is disabled")
    assert operator.id is not None
    raw = TOKEN_PREFIX + tokens.new(32)
    token = OperatorToken(
        operator_id=operator.id, name=name.strip(), token_hash=tokens.hash_token(raw),
        created_at=now,
    )  # fmt: skip
    session.add(token)
    session.flush()
    audit.record(session, actor=actor, action="token.create", entity_type="operator_token",
                 entity_id=token.id, before=None, after=token_json(token), now=now)  # fmt: skip
    return token, raw


def list_tokens(session: Session, operator_id: int | None) -> list[OperatorToken]:
    """Tokens, newest first: one operator's, or everyone's for `None`."""
    statement = select(OperatorToken)
    if operator_id is not None:
        statement = statement.where(OperatorToken.operator_id == operator_id)
    return list(session.exec(statement.order_by(col(OperatorToken.id).desc())))


def revoke_token(
    session: Session, token_id: int, *, by: SignedIn | None, actor: str, now: datetime
) -> OperatorToken:
    """Revoke a token: an operator its own, an admin (or the bootstrap owner, `by=None`) any.
    Someone else's token is not found for a non-admin, as if it did not exist."""
    token = session.get(OperatorToken, token_id)
    mine = token is not None and (
        by is None or by.role is OperatorRole.ADMIN or token.operator_id == by.id
    )
    if token is None or not mine:
        raise NotFound(f"token {token_id} not found")
    if token.revoked_at is None:
        before = token_json(token)
        token.revoked_at = now
        session.add(token)
        audit.record(session, actor=actor, action="token.revoke", entity_type="operator_token",
                     entity_id=token.id, before=before, after=token_json(token),
                     now=now)  # fmt: skip
    return token


def looks_like_token(raw: str) -> bool:
    return raw.startswith(TOKEN_PREFIX)


def authenticate_token(session: Session, raw: str, *, now: datetime) -> SignedIn | None:
    """The operator an API token acts for, or None (unknown or revoked token, disabled
    operator). Refreshes the token's `last_used_at` when it is a minute old or more."""
    row = session.exec(
        select(OperatorToken, Operator)
        .join(Operator, col(Operator.id) == OperatorToken.operator_id)
        .where(OperatorToken.token_hash == tokens.hash_token(raw))
    ).first()
    if row is None:
        return None
    token, operator = row
    if token.revoked_at is not None or operator.disabled_at is not None:
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        # Conditional, so concurrent requests in the same minute write it once between them.
        session.execute(
            update(OperatorToken)
            .where(col(OperatorToken.id) == token.id)
            .where(
                or_(
                    col(OperatorToken.last_used_at).is_(None),
                    col(OperatorToken.last_used_at) <= now - LAST_USED_EVERY,
                )
            )
            .values(last_used_at=now)
        )
    return signed_in(operator)
