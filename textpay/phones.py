"""Phone numbers: turning what people type into E.164, the only form TextPay stores.

Operators paste numbers as `(212) 555-0147`, `212.555.0147` or `+1 212 555 0147`; Twilio sends
`+12125550147`. Everything is parsed with Google's libphonenumber (`phonenumbers`) so that all of
these meet at the same account.
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers

from textpay.errors import ValidationFailed
from textpay.redaction import has_card_number


def to_e164(raw: str, *, default_region: str = "US", field: str = "phone") -> str:
    """Return `raw` as an E.164 string, or raise `ValidationFailed` naming `field`."""
    text = raw.strip()
    if not text:
        raise ValidationFailed.single(field, "is required")
    e164, problem = _parsed(text, default_region)
    if e164 is not None:
        return e164
    # What is not a phone number is named in the error, unless it is a card number pasted in.
    shown = "it" if has_card_number(text) else repr(raw)
    raise ValidationFailed.single(field, f"{shown} {problem}")


@lru_cache(maxsize=4096)
def _parsed(text: str, default_region: str) -> tuple[str | None, str]:
    """`text` in E.164, or None and what is wrong with it. Kept per process: every inbound
    text parses its sender, and libphonenumber's parse was a tenth of a BAL's time; the same
    few thousand numbers text again and again."""
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None, "is not a phone number"
    if not phonenumbers.is_valid_number(parsed):
        return None, "is not a valid phone number"
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)), ""


def masked_phone(number: str) -> str:
    """A number fit for logs: all but the last two digits hidden (`+1********47`)."""
    digits = number.strip()
    return digits[:2] + "*" * max(0, len(digits) - 4) + digits[-2:] if len(digits) > 4 else "****"
