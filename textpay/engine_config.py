"""How the engine is set up for a deployment, and the voice its texts speak in.

Owns `EngineConfig` (program name, support contact, carrier keyword handling, AutoPay's retry
schedule, the inbound flood limit, where card links point), built once from settings by
`textpay.wiring`, and `voice`, which adds the operator's daily message cap that texts quote.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session

from textpay import replies
from textpay.config import DEVELOPMENT_LINK_BASE
from textpay.policy import cached_global_settings


@dataclass(frozen=True)
class EngineConfig:
    program: str = "TextPay"
    support: str = "textpay.example/help"
    carrier_answers_keywords: bool = False
    default_region: str = "US"
    autopay_retry_days: tuple[int, ...] = (1, 3)
    # Texts one number may send per minute before TextPay stops answering (STOP always works).
    inbound_per_minute: int = 20
    # Where card links point (`<link_base>/card/<token>`): TEXTPAY_PUBLIC_URL; without it, a
    # web request's own host (the edge replaces this per request), else this development one.
    link_base: str = DEVELOPMENT_LINK_BASE


def voice(session: Session, config: EngineConfig) -> replies.Voice:
    cap = cached_global_settings(session).daily_message_cap
    return replies.Voice(program=config.program, support=config.support, messages_per_day=cap)
