"""Ingest baseline for bench/triggers.py: a bare Flask app that reads a form-encoded callback at the same
path as the connector's inbound URL and answers its fields back as JSON. No lookup, no parsing into
events, no database: what the connector does beyond this is what the benchmark's ratio measures.

bench/triggers.py serves it with gunicorn exactly like `connector serve` (same workers, threads and
access log):

    .venv/bin/gunicorn -k gthread -w 2 --threads 8 --pythonpath bench 'echo:create_app()'
"""

from __future__ import annotations

from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.get("/v1/manifest")
    def manifest():
        # Only so the benchmark polls both servers for readiness the same way.
        return jsonify({"echo": True})

    @app.route("/v1/inbound/allmysms/<token>", methods=["GET", "POST"])
    def receive(token: str):
        return jsonify(request.form.to_dict())

    return app
