"""TextPay's clock process: the jobs that act on the engine's own initiative.

The low-balance scan, AutoPay, prompt expiry and the outbox dispatcher arrive here, one job per
module, with the issue that builds the scheduler. This package imports the domain core, never the
other way round.
"""
