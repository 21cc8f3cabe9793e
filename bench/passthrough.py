"""Baselines: a bare Flask app that forwards a send to the AllMySMS sandbox and does nothing else.

No validation and no translation: the JSON body is read and ignored, the smsData feeds were built before
the run, posted with requests (what a bare integration would use), and the sandbox's replies are returned
as JSON. What the connector does beyond this is what the
benchmark's ratios measure. bench/run.py serves it with gunicorn exactly like `connector serve`:

    PASSTHROUGH_UPSTREAM=http://127.0.0.1:8100 .venv/bin/gunicorn -k gthread -w 2 --threads 8 \\
        --pythonpath bench 'passthrough:create_app()'

- A send of one recipient (the throughput rounds) posts SMS_DATA, the feed the connector writes for
  SAMPLE_BODY.
- A large send (``bulk_sizes``, e.g. 10,000 and 100,000 recipients of breakdown.personalised_payload) posts
  the feeds the connector writes for it, ``per_feed`` recipients each, one after the other as a bare
  integration would; they are written when the app is made, with the connector's own feeds.sms_data, so
  that both post the same bytes and the baseline spends nothing on them. Its answer is the list of the
  sandbox's replies.
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


def create_app(upstream: str | None = None, pool_size: int = 16, bulk_sizes: str = "", per_feed: int = 2000) -> Flask:
    """`upstream` is the sandbox's base URL (default: $PASSTHROUGH_UPSTREAM); ``bulk_sizes`` the recipient counts
    of the large sends it answers, comma-separated (default: $PASSTHROUGH_BULK_SIZES)."""
    url = (upstream or os.environ["PASSTHROUGH_UPSTREAM"]).rstrip("/") + SEND_PATH
    sizes = bulk_sizes or os.environ.get("PASSTHROUGH_BULK_SIZES", "")
    bulk = {int(size): bulk_feeds(int(size), per_feed) for size in sizes.split(",") if size.strip()}
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
        body = request.get_json(force=True)
        auth = request.authorization
        fed = bulk.get(len(body.get("recipients", ()))) or [SMS_DATA]
        del body
        replies = [
            session.post(
                url,
                data={"login": auth.username, "apiKey": auth.password, "returnformat": "json", "smsData": feed},
                timeout=(5, 60),
            ).json()
            for feed in fed
        ]
        return jsonify(replies[0] if len(replies) == 1 else replies)

    return app


def bulk_feeds(count: int, per_feed: int) -> list[str]:
    """The smsData feeds the connector writes for breakdown.personalised_payload(count), ``per_feed`` recipients
    each (its JSON format, the default)."""
    from datetime import UTC, datetime

    from breakdown import personalised_payload

    from connector.sending import feeds, messages

    request = messages.sms_request(personalised_payload(count), messages.Rules(), datetime.now(UTC))
    return [feeds.sms_data(request, start, start + per_feed, "json") for start in range(0, count, per_feed)]
