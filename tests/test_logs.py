"""Log output: JSON lines or text, and the last line of defence that masks secrets and phone numbers."""

from __future__ import annotations

import io
import json
import logging

import pytest

from connector import config, logs

TOKEN = "Zq3" * 10 + "x9"  # 32 characters, as an inbound URL token


@pytest.mark.parametrize("text, shown", [
    (f"POST /v1/inbound/allmysms/{TOKEN} 200", "POST /v1/inbound/allmysms/sha256:"),
    (f"unknown token {TOKEN}", "unknown token sha256:"),
    ("Authorization: Basic ZGVtbzpkZW1vLWFwaS1rZXk=", "Authorization: Basic [masked]"),
    ("Authorization: Bearer abcdefgh12345678", "Authorization: Bearer [masked]"),
    ("login=demo&apiKey=demo-api-key&returnformat=json", "login=demo&apiKey=[masked]&returnformat=json"),
    ('{"apiKey": "k-123", "login": "demo"}', '{"apiKey": "[masked]", "login": "demo"}'),
    ("secret whsec_c2VjcmV0LXNpZ25pbmcta2V5", "secret whsec_[masked]"),
    ("to 0611111111: ok", "to 061…11: ok"),
    ("to 06 11 11 11 11.", "to 061…11."),
    ("to +33 6 11 11 11 11", "to +33…11"),
    ("to 33611111111", "to 336…11"),
    ("to 06.11.11.11.11 or 06-11-11-11-12", "to 061…11 or 061…12"),
    ('"phone_number": "+33612345678"', '"phone_number": "+33…78"'),
])
def test_secrets_and_numbers_are_masked(text, shown):
    masked = logs.mask(text)
    assert masked.startswith(shown)
    for clear in (TOKEN, "ZGVtbzpkZW1vLWFwaS1rZXk=", "abcdefgh12345678", "demo-api-key", "k-123",
                  "c2VjcmV0LXNpZ25pbmcta2V5", "0611111111", "11 11 11 11", "611111111", "612345678"):
        assert clear not in masked


@pytest.mark.parametrize("text", [
    "2026-11-29 12:30:00 action send_sms done in 123 ms",
    "Listening at: http://127.0.0.1:8000 (41234)",
    "request 5f0c2b7e9a1d4c3e, delivery msg_0123456789abcdef01234567, event evt_5f0c2b7e9a1d4c3e5f0c2b7e",
    "Booting worker with pid: 123456",
    "inbound callback for an unknown token (sha256:0123456789ab)",
])
def test_what_is_neither_secret_nor_a_number_is_left_as_it_is(text):
    assert logs.mask(text) == text


def emitted(log_format: str, settings: dict | None = None) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logs.equip(handler, {**config.load({}), "CONNECTOR_LOG_FORMAT": log_format, **(settings or {})})
    logger = logging.getLogger(f"tests.logs.{log_format}.{id(out)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, out


def test_a_json_line_has_the_time_level_logger_message_and_the_request_id(app):
    logger, out = emitted("json")
    with app.test_request_context("/v1/me"):
        from flask import g
        g.request_id = "5f0c2b7e9a1d4c3e"
        logger.warning("sent to %s", "0611111111")
    entry = json.loads(out.getvalue())
    assert entry["level"] == "WARNING" and entry["logger"] == logger.name and entry["request_id"] == "5f0c2b7e9a1d4c3e"
    assert entry["message"] == "sent to 061…11" and entry["time"].endswith("Z")


def test_a_traceback_is_one_json_line_and_masked_too():
    logger, out = emitted("json")
    try:
        raise ValueError("apiKey=demo-api-key for 0611111111\nsecond line")
    except ValueError:
        logger.exception("failed")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert "ValueError" in entry["exception"] and "demo-api-key" not in entry["exception"]
    assert "0611111111" not in entry["exception"]


def test_settings_marked_secret_in_the_config_schema_are_masked_wherever_they_appear():
    secret_key = "k" * 8 + "-the-service-secret-key-0123456789"
    logger, out = emitted("text", {"CONNECTOR_SECRET_KEY": secret_key,
                                   "DATABASE_URL": "postgresql://app:hunter2-long@db/connector"})
    logger.error("could not open postgresql://app:hunter2-long@db/connector with %s", secret_key)
    assert "hunter2" not in out.getvalue() and secret_key not in out.getvalue()
    assert "could not open [masked] with [masked]" in out.getvalue()


def test_every_secret_setting_is_known_to_the_masking():
    names = {name for name, prop in config.schema()["properties"].items() if prop.get("x-secret")}
    assert {"CONNECTOR_SECRET_KEY", "DATABASE_URL", "CONNECTOR_METRICS_TOKEN"} <= names
    settings = {**config.load({}), **{name: f"value-of-{name}" for name in names}}
    assert set(logs.secrets_of(settings)) == {f"value-of-{name}" for name in names}
