"""The JSON shapes of the admin API. Field names are part of the public contract (README, Admin
API): snake_case, money as integer `*_cents`, times as ISO 8601 with an offset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from textpay import episodes, passcodes, prompts
from textpay.accounts import payment_method_of
from textpay.card_refunds import RefundFacts
from textpay.models import (
    SETTING_FIELDS,
    Account,
    AuditLogEntry,
    Dispute,
    Facility,
    GlobalSettings,
    LedgerEntry,
    Message,
    Prompt,
)
from textpay.policy import effective_for_account, get_global_settings, resolve
from textpay.timeutil import utcnow


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def account_json(session: Session, account: Account) -> dict[str, Any]:
    assert account.id is not None
    facility = session.get(Facility, account.facility_id) if account.facility_id else None
    method = payment_method_of(session, account.id)
    effective = effective_for_account(session, account)
    latest = prompts.latest_for(session, [account.id]).get(account.id)
    open_prompt = latest if latest is not None and prompts.is_open(latest.status) else None
    return {
        "id": account.id,
        "account_number": account.account_number,
        "phone": account.phone,
        "nickname": account.nickname,
        "language": account.language,
        "timezone": account.timezone,
        "facility": facility.code if facility else None,
        "textpay_enabled": account.textpay_enabled,
        "autopay_enabled": account.autopay_enabled,
        "preset_amount_cents": account.preset_amount_cents,
        "threshold_cents": account.threshold_cents,
        "runway_days": account.runway_days,
        # Days of calls left at the account's usual pace (`textpay.runway`); null: unknown.
        "runway_estimate_days": episodes.runway_days_left(account, now=utcnow()),
        "passcode_over_cents": account.passcode_over_cents,
        "passcode_new_phone_days": account.passcode_new_phone_days,
        # Whether it has a passcode, never the passcode (only its hash is kept, never shown).
        "passcode_set": account.passcode_hash is not None,
        # While three wrong passcodes lock passcode payments (null otherwise).
        "passcode_locked_until": iso(passcodes.locked_until(account, now=utcnow())),
        "phone_since": iso(account.phone_since),
        "status": account.status,
        "opted_out": account.opted_out,
        "opted_out_at": iso(account.opted_out_at),
        "balance_cents": account.balance_cents,
        "balance_as_of": iso(account.balance_updated_at),
        # The token is write-only: what was stored is never read back out.
        "payment_method": (
            {
                "brand": method.brand,
                "last4": method.last4,
                "exp_month": method.exp_month,
                "exp_year": method.exp_year,
                "customer": method.customer,
            }
            if method
            else None
        ),
        "pending_prompt": prompt_json(open_prompt) if open_prompt else None,
        "effective": {**effective.as_dict(), "sources": effective.sources},
        "disputes": [dispute_json(d) for d in disputes_of(session, account.id)],
        "created_at": iso(account.created_at),
        "updated_at": iso(account.updated_at),
    }


# An account's answer lists its latest disputes only; a card with more is a matter for the
# processor's dashboard.
DISPUTES_SHOWN = 20


def disputes_of(session: Session, account_id: int) -> list[Dispute]:
    """The account's chargebacks, newest first."""
    return list(
        session.exec(
            select(Dispute)
            .where(Dispute.account_id == account_id)
            .order_by(col(Dispute.created_at).desc(), col(Dispute.id).desc())
            .limit(DISPUTES_SHOWN)
        )
    )


def dispute_json(dispute: Dispute) -> dict[str, Any]:
    return {
        "id": dispute.id,
        "amount_cents": dispute.amount_cents,
        "reason": dispute.reason,
        "status": dispute.status,
        "created_at": iso(dispute.created_at),
        "closed_at": iso(dispute.closed_at),
    }


def prompt_json(prompt: Prompt) -> dict[str, Any]:
    return {
        "id": prompt.id,
        "status": prompt.status,
        "amount_cents": prompt.amount_cents,
        "fee_cents": prompt.fee_cents,
        "expires_at": iso(prompt.expires_at),
        "created_at": iso(prompt.created_at),
    }


def ledger_entry_json(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "account_id": entry.account_id,
        "kind": entry.kind,
        "amount_cents": entry.amount_cents,
        "balance_after_cents": entry.balance_after_cents,
        "reference": entry.reference,
        "memo": entry.memo,
        "created_at": iso(entry.created_at),
    }


def card_refund_json(found: RefundFacts) -> dict[str, Any]:
    refund = found.refund
    return {
        "id": refund.id,
        "account_id": refund.account_id,
        "deposit_id": found.deposit_id,
        "amount_cents": refund.amount_cents,
        "reason": refund.reason,
        "status": refund.status,
        "card_last4": found.card_last4,
        "refund_id": refund.refund_id,
        "failure_reason": refund.failure_reason,
        "actor": refund.actor,
        "created_at": iso(refund.created_at),
        "settled_at": iso(refund.settled_at),
        # The debit that took the money off the balance, and the entry that gave it back if
        # the processor refused.
        "ledger_entry": ledger_entry_json(found.debit) if found.debit else None,
        "give_back_entry": ledger_entry_json(found.give_back) if found.give_back else None,
        "balance_cents": found.balance_cents,
    }


def settings_json(row: GlobalSettings) -> dict[str, Any]:
    return {
        **{name: getattr(row, name) for name in SETTING_FIELDS},
        "state_quiet_hours": row.state_quiet_hours,
        "updated_at": iso(row.updated_at),
    }


def facility_json(session: Session, facility: Facility) -> dict[str, Any]:
    overrides = {name: getattr(facility, name) for name in SETTING_FIELDS}
    effective = resolve(get_global_settings(session), facility)
    return {
        "code": facility.code,
        "name": facility.name,
        **overrides,
        "effective": {**effective.as_dict(), "sources": effective.sources},
        "created_at": iso(facility.created_at),
        "updated_at": iso(facility.updated_at),
    }


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "direction": message.direction,
        "phone": message.phone,
        "account_id": message.account_id,
        "body": message.body,
        "reply_body": message.reply_body,
        "status": message.status,
        "kind": message.kind,
        "engine_initiated": message.engine_initiated,
        "send_after": iso(message.send_after),
        "sent_at": iso(message.sent_at),
        "attempts": message.attempts,
        "twilio_sid": message.twilio_sid,
        "error_code": message.error_code,
        "created_at": iso(message.created_at),
    }


def audit_json(entry: AuditLogEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "actor": entry.actor,
        "action": entry.action,
        "entity_type": entry.entity_type,
        "entity_id": entry.entity_id,
        "before": entry.before,
        "after": entry.after,
        "created_at": iso(entry.created_at),
    }
