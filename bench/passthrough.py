"""Throughput baseline: a bare Flask app that forwards one send to the AllMySMS sandbox and does nothing else.

No validation and no translation: the JSON body is read and ignored, the smsData feed was built once at
import, and the sandbox's reply is returned as JSON. What the connector does beyond this is what the
benchmark's ratio measures. bench/run.py serves it with gunicorn exactly like `connector serve`:

    PASSTHROUGH_UPSTREAM=http://127.0.0.1:8100 .venv/bin/gunicorn -k gthread -w 2 --threads 8 \\
        --pythonpath bench 'passthrough:create_app()'
"""

from __future__ import annotations

import os

import requests
from flask import Flask, jsonify, request
from requests.adapters import HTTPAdapter

# The body bench/run.py sends to both servers, and the feed the connector writes for it (prebuilt here,
# so the baseline spends nothing on translation).
SAMPLE_BODY = {"message": "Hi #param_1#", "recipients": [{"phone_number": "0611111111", "params": ["Al"]}]}
SMS_DATA = '{"DATA":{"MESSAGE":"Hi #param_1#","DYNAMIC":"1","SMS":[{"MOBILEPHONE":"33611111111","PARAM_1":"Al"}]}}'

SEND_PATH = "/http/9.0/sendSms/"


def create_app(upstream: str | None = None, pool_size: int = 16) -> Flask:
    """`upstream` is the sandbox's base URL (default: $PASSTHROUGH_UPSTREAM)."""
    url = (upstream or os.environ["PASSTHROUGH_UPSTREAM"]).rstrip("/") + SEND_PATH
    session = requests.Session()
    # The same pool the connector gives its AllMySMS client (threads x 2), so neither waits for a connection.
    session.mount("http://", HTTPAdapter(max_retries=0, pool_connections=pool_size, pool_maxsize=pool_size))
    app = Flask(__name__)

    @app.get("/v1/manifest")
    def manifest():
        # Only so the benchmark polls both servers for readiness the same way.
        return jsonify({"passthrough": True})

    @app.post("/v1/actions/send_sms")
    def send_sms():
        request.get_json(force=True)
        auth = request.authorization
        reply = session.post(
            url,
            data={"login": auth.username, "apiKey": auth.password, "returnformat": "json", "smsData": SMS_DATA},
            timeout=(5, 60),
        )
        return jsonify(reply.json())

    return app
