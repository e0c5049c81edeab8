"""The baseline for `bench/boot.py`: the least a Flask worker loads, one empty route.

Its own module, so that a worker serving it imports Flask and nothing of the benchmark.
"""

from __future__ import annotations

from flask import Flask


def floor_app() -> Flask:
    app = Flask("bench_boot_floor")

    @app.post("/twilio/sms")
    def inbound() -> str:
        return ""

    return app
