"""Log output: JSON lines or text, and the last line of defence that masks secrets and phone numbers."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading

import pytest

from connector import config
from connector.observe import logs

TOKEN = "Zq3" * 10 + "x9"  # 32 characters, as an inbound URL token


@pytest.mark.parametrize(
    "text, shown",
    [
        (f"POST /v1/inbound/allmysms/{TOKEN} 200", "POST /v1/inbound/allmysms/sha256:"),
        (f"unknown token {TOKEN}", "unknown token sha256:"),
        ("Authorization: Basic ZGVtbzpkZW1vLWFwaS1rZXk=", "Authorization: Basic [masked]"),
        ("Authorization: Bearer abcdefgh12345678", "Authorization: Bearer [masked]"),
        ("login=demo&apiKey=demo-api-key&returnformat=json", "login=demo&apiKey=[masked]&returnformat=json"),
        ('{"apiKey": "k-123", "login": "demo"}', '{"apiKey": "[masked]", "login": "demo"}'),
        ("TOKEN: k-123", "TOKEN: [masked]"),
        # Read without regard to case, the Kelvin sign is a "k" (the quick look for key words is in ASCII).
        ("api_\u212aey=k-123 sent", "api_\u212aey=[masked] sent"),
        ("BEARER abcdefgh12345678 \u212a", "BEARER [masked]"),
        ("secret whsec_c2VjcmV0LXNpZ25pbmcta2V5", "secret whsec_[masked]"),
        ("to 0611111111: ok", "to 061…11: ok"),
        ("to 06 11 11 11 11.", "to 061…11."),
        ("to +33 6 11 11 11 11", "to +33…11"),
        ("to 33611111111", "to 336…11"),
        ("to 06.11.11.11.11 or 06-11-11-11-12", "to 061…11 or 061…12"),
        ('"phone_number": "+33612345678"', '"phone_number": "+33…78"'),
    ],
)
def test_secrets_and_numbers_are_masked(text, shown):
    masked = logs.mask(text)
    assert masked.startswith(shown)
    for clear in (
        TOKEN,
        "ZGVtbzpkZW1vLWFwaS1rZXk=",
        "abcdefgh12345678",
        "demo-api-key",
        "k-123",
        "c2VjcmV0LXNpZ25pbmcta2V5",
        "0611111111",
        "11 11 11 11",
        "611111111",
        "612345678",
    ):
        assert clear not in masked


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-29 12:30:00 action send_sms done in 123 ms",
        "Listening at: http://127.0.0.1:8000 (41234)",
        "request 5f0c2b7e9a1d4c3e, delivery msg_0123456789abcdef01234567, event evt_5f0c2b7e9a1d4c3e5f0c2b7e",
        "Booting worker with pid: 123456",
        "inbound callback for an unknown token (sha256:0123456789ab)",
    ],
)
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
    logger, out = emitted(
        "text", {"CONNECTOR_SECRET_KEY": secret_key, "DATABASE_URL": "postgresql://app:hunter2-long@db/connector"}
    )
    logger.error("could not open postgresql://app:hunter2-long@db/connector with %s", secret_key)
    assert "hunter2" not in out.getvalue() and secret_key not in out.getvalue()
    assert "could not open [masked] with [masked]" in out.getvalue()


def test_every_secret_setting_is_known_to_the_masking():
    names = {name for name, prop in config.schema()["properties"].items() if prop.get("x-secret")}
    assert {"CONNECTOR_SECRET_KEY", "DATABASE_URL", "CONNECTOR_METRICS_TOKEN"} <= names
    settings = {**config.load({}), **{name: f"value-of-{name}" for name in names}}
    assert set(logs.secrets_of(settings)) == {f"value-of-{name}" for name in names}


# --- what is not printable ---------------------------------------------------------------------------------


def test_a_line_break_and_a_terminal_escape_in_a_message_are_escaped_on_its_one_line():
    logger, out = emitted("text")
    logger.warning('"GET %s" 404', "/v1/x\n2026-11-29 10:00:00 INFO connector: forged\x1b[2J\r\u2028\u202e")
    (line,) = out.getvalue().splitlines()
    assert line.endswith('"GET /v1/x\\x0a2026-11-29 10:00:00 INFO connector: forged\\x1b[2J\\x0d\\u2028\\u202e" 404')


def test_text_that_is_printable_is_left_as_it_is_accents_emoji_and_backslashes_included():
    assert logs.escaped("Délivré 👋🏽 C:\\temp ש") == "Délivré 👋🏽 C:\\temp ש"


def test_a_json_line_escapes_what_json_leaves_unescaped_and_reads_back_the_same():
    logger, out = emitted("json")
    path = "/v1/x\x85\u2028\x7f\ud800"
    logger.info("request", extra={"http": {"path": path}})
    (line,) = out.getvalue().splitlines()
    assert line.isprintable()
    entry = json.loads(line)
    assert entry["http"]["path"] == path


def test_a_traceback_keeps_its_line_breaks_but_not_the_escapes_in_its_message():
    logger, out = emitted("text")
    try:
        raise ValueError("bad value \x1b[31mred")
    except ValueError:
        logger.exception("failed")
    text = out.getvalue()
    assert "Traceback (most recent call last):\n" in text and "ValueError: bad value \\x1b[31mred" in text
    assert "\x1b" not in text


# `connector serve` itself: gunicorn's access log, through the same filter and formats.


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_request_path_with_a_line_break_and_an_escape_is_one_access_log_line_with_them_escaped(tmp_path, log_format):
    import requests

    from tests.conftest import wait_for
    from tests.test_serve import clean_env, start, stop, written

    env = clean_env(tmp_path, CONNECTOR_WORKERS="1", CONNECTOR_THREADS="2", CONNECTOR_LOG_FORMAT=log_format)
    url, log, process = start([sys.executable, "-m", "connector.ops.cli", "serve"], env, tmp_path)
    try:
        answer = requests.get(url + "/v1/x%0a127.0.0.1%20%22GET%20/v1/forged%22%20200%1b[2K", timeout=10)
        assert answer.status_code == 404
        request_id = answer.headers["X-Request-Id"]

        def logged():
            so_far = written(log)
            return so_far if request_id in so_far else None

        text = wait_for(logged, what="the access log line")
    finally:
        stop(process)
    (line,) = [line for line in text.splitlines() if "/v1/x" in line or "/v1/forged" in line]
    assert request_id in line and "\x1b" not in text
    message = json.loads(line)["message"] if log_format == "json" else line
    # gunicorn escapes the quotes itself; the line break and the escape are ours to escape.
    assert '"GET /v1/x\\x0a127.0.0.1 \\"GET /v1/forged\\" 200\\x1b[2K" 404' in message


def test_the_access_fields_are_gunicorns_each_worked_out_when_asked():
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config
    from gunicorn.glogging import SafeAtoms

    from connector.ops.access import AccessLog, Atoms

    logger = AccessLog(Config())
    logger.now = lambda: "[30/Nov/2026:08:00:00 +0000]"  # type: ignore[method-assign]
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": '/v1/x?a="b"',
        "PATH_INFO": '/v1/x"',
        "QUERY_STRING": 'a="b"',
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": 'curl "8"',
        "wsgi.url_scheme": "http",
    }
    request = SimpleNamespace(headers=[("USER-AGENT", 'curl "8"'), ("X-Twice", "1"), ("X-TWICE", "2")])
    answer = SimpleNamespace(status="201 CREATED", headers=[("X-Request-Id", "req_1"), ("Content-Type", "a/b")], sent=7)
    took = timedelta(seconds=2, microseconds=3456)
    everything = logger.atoms(answer, request, environ, took)
    expected = SafeAtoms(everything)
    lazy = Atoms(logger, answer, request, environ, took)
    asked = [
        *everything,
        "{X-Request-ID}o",
        "{x-twice}i",
        "{REMOTE_ADDR}e",
        "{absent}i",
        "{x}",
        "Z",
        "{wsgi.url_scheme}e",
    ]
    assert len(asked) > 30
    for key in asked:
        assert lazy[key] == expected[key], key
    assert dict(lazy) == dict(expected) and lazy
    line = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s %({x-twice}i)s'
    assert line % lazy == line % expected == '127.0.0.1 "POST /v1/x?a=\\"b\\" HTTP/1.1" 201 7 2003ms req_1 2'


# One filter, every log: the application's, gunicorn's access log and the sandbox's.

BASIC_KEY = "ZGVtbzpkZW1vLWFwaS1rZXk="  # demo:demo-api-key
NUMBER = "0611111111"


def _app_line(tmp_path, log_format: str) -> str:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logs.equip(handler, {**config.load({}), "CONNECTOR_LOG_FORMAT": log_format})  # as logs.configure does
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("connector.web.actions").warning(
            "POST /v1/inbound/allmysms/%s from %s, Authorization: Basic %s", TOKEN, NUMBER, BASIC_KEY
        )
    finally:
        root.removeHandler(handler)
    return out.getvalue()


def _access_line(tmp_path, log_format: str) -> str:
    from datetime import timedelta
    from types import SimpleNamespace

    from gunicorn.config import Config

    from connector.ops.serving import AccessLog

    cfg = Config()
    cfg.set("accesslog", str(tmp_path / "access.log"))
    cfg.set("access_log_format", '%(h)s "%(r)s" %(s)s %(U)s %({authorization}i)s')
    logger = AccessLog(cfg)
    environ = {
        "REQUEST_METHOD": "POST",
        "RAW_URI": f"/v1/inbound/allmysms/{TOKEN}?from={NUMBER}",
        "PATH_INFO": f"/v1/inbound/allmysms/{TOKEN}",
        "QUERY_STRING": f"from={NUMBER}",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
    }
    try:
        logger.access(
            SimpleNamespace(status="200 OK", headers=[], sent=2),
            [("AUTHORIZATION", f"Basic {BASIC_KEY}")],
            environ,
            timedelta(milliseconds=5),
        )
    finally:
        for handler in logger.access_log.handlers:
            handler.close()
        logging.captureWarnings(False)  # set by the JSON set-up, for the process it serves
    return (tmp_path / "access.log").read_text(encoding="utf-8")


def _sandbox_line(tmp_path, log_format: str) -> str:
    import requests

    from connector.sandbox import create_sandbox_app, make_sandbox_server

    server = make_sandbox_server(create_sandbox_app())
    # A handler of its own, with no filter: the masking is the sandbox logger's, whatever it writes to.
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    werkzeug = logging.getLogger("werkzeug")
    werkzeug.addHandler(handler)
    level = werkzeug.level
    werkzeug.setLevel(logging.INFO)
    try:
        thread = threading.Thread(target=server.handle_request)
        thread.start()
        requests.get(
            f"http://127.0.0.1:{server.server_port}/{TOKEN}/{NUMBER}?apiKey=demo-api-key",
            timeout=10,
            headers={"Authorization": f"Basic {BASIC_KEY}"},
        )
        thread.join(timeout=10)
        werkzeug.warning("Authorization: Basic %s", BASIC_KEY)
    finally:
        werkzeug.removeHandler(handler)
        werkzeug.setLevel(level)
        server.server_close()
    return out.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json"])
@pytest.mark.parametrize("line", [_app_line, _access_line, _sandbox_line], ids=["app", "access", "sandbox"])
def test_one_filter_masks_a_token_a_basic_key_and_a_number_in_every_log(tmp_path, monkeypatch, line, log_format):
    monkeypatch.setenv("CONNECTOR_LOG_FORMAT", log_format)
    text = line(tmp_path, log_format)
    assert "sha256:" in text and "Basic [masked]" in text
    for clear in (TOKEN, BASIC_KEY, NUMBER, "demo-api-key"):
        assert clear not in text, text


def test_a_record_masked_on_its_logger_is_masked_again_by_a_handler_that_knows_more_secrets():
    secret_key = "the-service-secret-key-0123456789"
    logger, out = emitted("text", {"CONNECTOR_SECRET_KEY": secret_key})
    logs.guard(logger, queries=True)
    logs.guard(logger, queries=True)  # once is enough: the second is a no-op
    logger.warning('"GET /http/9.0/getInfo/?apiKey=alice-key&login=alice HTTP/1.1" 200 with %s', secret_key)
    assert len([f for f in logger.filters if isinstance(f, logs.Masking)]) == 1
    assert out.getvalue().endswith('"GET /http/9.0/getInfo/?[redacted] HTTP/1.1" 200 with [masked]\n')


def test_a_line_handler_writes_whole_lines_from_many_threads_without_a_lock(tmp_path):
    import threading

    path = tmp_path / "access.log"
    with open(path, "w") as stream:
        plain = logging.StreamHandler(stream)
        plain.setFormatter(logging.Formatter("%(name)s %(message)s"))
        plain.addFilter(logs.Masking())
        handler = logs.LineHandler.replacing(plain)
        assert isinstance(handler, logs.LineHandler) and handler.lock is None
        assert handler.formatter is plain.formatter and handler.filters == plain.filters
        logger = logging.getLogger("test.lines")
        logger.propagate = False
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        try:
            stream.write("written before\n")  # through the stream's buffer: flushed first

            def write(n: int) -> None:
                for k in range(200):
                    logger.info("thread %d line %d %s to 0611111111", n, k, "x" * 300)

            threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            logger.removeHandler(handler)
    lines = path.read_text().splitlines()
    assert lines[0] == "written before" and len(lines) == 1 + 8 * 200
    for line in lines[1:]:
        assert line.startswith("test.lines thread ") and line.endswith(" to 061…11") and "x" * 300 in line
    assert len(set(lines)) == len(lines)


def test_only_a_plain_stream_handler_with_a_file_descriptor_is_replaced(tmp_path):
    import io

    in_memory = logging.StreamHandler(io.StringIO())
    assert logs.LineHandler.replacing(in_memory) is in_memory
    to_file = logging.FileHandler(tmp_path / "app.log")
    try:
        assert logs.LineHandler.replacing(to_file) is to_file  # it reopens, rotates: left as it is
    finally:
        to_file.close()
