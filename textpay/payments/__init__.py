"""Payment gateways: the protocol (`gateway`), the deterministic sandbox (`sandbox`) and Stripe
(`stripe`). Everything outside this package imports the vocabulary from here."""

from textpay.payments.gateway import (
    AUTHENTICATION_REQUIRED,
    CardInfo,
    CardSetup,
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    GatewayKeyReuse,
    GatewayRefund,
    GatewayTimeout,
    Initiator,
    PaymentGateway,
    RefundResult,
    RefundStatus,
    UnknownCard,
)
from textpay.payments.sandbox import SANDBOX_CARDS, SandboxCard, SandboxGateway

__all__ = [
    "AUTHENTICATION_REQUIRED",
    "SANDBOX_CARDS",
    "CardInfo",
    "CardSetup",
    "ChargeRequest",
    "ChargeResult",
    "ChargeStatus",
    "GatewayKeyReuse",
    "GatewayRefund",
    "GatewayTimeout",
    "Initiator",
    "PaymentGateway",
    "RefundResult",
    "RefundStatus",
    "SandboxCard",
    "SandboxGateway",
    "UnknownCard",
]
