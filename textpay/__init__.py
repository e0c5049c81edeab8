"""TextPay's domain core: accounts, the ledger, settings policy and payment gateways.

Nothing in this package knows about HTTP or the clock process: Flask lives in `webhooks/`,
APScheduler in `scheduler/`. Functions here take a database session and never commit it; the
edges (a view, a job, a CLI command) own the transaction.
"""

__version__ = "0.1.0"
