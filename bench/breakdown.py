"""In-process timings of the steps of one large send_sms (no HTTP server in between), and a profile of a
step: where the time of a big personalised send goes."""

from __future__ import annotations

import cProfile
import json
import pstats
import time
from datetime import UTC, datetime
from pathlib import Path

from flask import Flask

from connector import config
from connector.description import manifest
from connector.sending import actions, feeds, messages
from connector.sending.upstream import AllMySMS, Credentials

MESSAGE = "Hello #param_1#, your code is #param_2#."
_REPO = Path(__file__).resolve().parent.parent


def personalised_payload(count: int) -> dict:
    """send_sms input with `count` distinct French mobile numbers, two params each."""
    if not 1 <= count <= 10_000_000:
        raise ValueError("count must be between 1 and 10,000,000")
    # 061xxxxxxx is a French mobile range phone number libraries accept as valid.
    return {
        "message": MESSAGE,
        "recipients": [{"phone_number": f"061{i:07d}", "params": [f"Client {i}", f"{i:06d}"]} for i in range(count)],
    }


class Steps:
    """The pieces of the send_sms path, set up as the connector sets them up from the same settings."""

    def __init__(self, upstream_url: str, credentials: Credentials):
        self.settings = config.load(overrides={"ALLMYSMS_BASE_URL": upstream_url})
        loaded = manifest.load()
        action = loaded.action("send_sms")
        self.catalog = loaded.catalog
        self.input = action.input
        s = self.settings
        self.rules = messages.Rules(
            region=s["CONNECTOR_DEFAULT_COUNTRY"],
            zone=s["ALLMYSMS_TIMEZONE"],
            stop_mention=s["CONNECTOR_STOP_MENTION"],
            max_recipients=s["CONNECTOR_MAX_RECIPIENTS"],
        )
        self.chunk = s["ALLMYSMS_RECIPIENTS_PER_FEED"]
        self.at_once = s["ALLMYSMS_CONCURRENT_FEEDS"]
        self.upstream = AllMySMS(upstream_url, read_timeout=s["ALLMYSMS_READ_TIMEOUT"])
        self.credentials = credentials

    def validate(self, payload: dict) -> list:
        return self.catalog.check(self.input, payload)

    def sms_request(self, payload: dict) -> messages.SmsRequest:
        return messages.sms_request(payload, self.rules, datetime.now(UTC))

    def sent(self, request: messages.SmsRequest, at_once: int) -> list[dict]:
        """The feeds written and sent as the connector sends them, ``at_once`` at a time (1: in turn)."""
        ctx = actions.Context(
            upstream=self.upstream,
            credentials=self.credentials,
            rules=self.rules,
            feed_format=self.settings["ALLMYSMS_FEED_FORMAT"],
            recipients_per_feed=self.chunk,
            credits_per_sms_fr=self.settings["ALLMYSMS_CREDITS_PER_SMS_FR"],
            concurrent_feeds=at_once,
        )
        fed = actions._chunks(ctx, request, list(request.recipients))
        return actions._sent(ctx, fed, self.upstream.send_sms, len(request.recipients), False)

    def feeds(self, request: messages.SmsRequest, fmt: str) -> list[str]:
        return [
            feeds.sms_data(request, start, start + self.chunk, fmt)
            for start in range(0, len(request.recipients), self.chunk)
        ]


def measure(count: int, upstream_url: str, credentials: Credentials) -> list[dict]:
    """Each step of one send to `count` recipients, in order, with its duration in seconds, wall (``seconds``)
    and CPU of this process (``cpu_s``). A step marked ``alternative`` does again what another did, another way
    (the round trips in turn, then as the connector makes them): it is not part of the total."""
    steps = Steps(upstream_url, credentials)
    body = json.dumps(personalised_payload(count)).encode()
    timings: list[dict] = []

    def step(name: str, what: str, func, *args, alternative: bool = False):
        started, cpu = time.perf_counter(), time.process_time()
        value = func(*args)
        timings.append(
            {
                "step": name,
                "what": what,
                "seconds": time.perf_counter() - started,
                "cpu_s": time.process_time() - cpu,
                "alternative": alternative,
            }
        )
        return value

    payload = step("parse body", "json.loads of the request body (stdlib, no duplicate-key hook)", json.loads, body)
    problems = step(
        "schema validation", "catalog.check: jsonschema-rs screen, jsonschema explains", steps.validate, payload
    )
    if problems:
        raise RuntimeError(f"the benchmark payload does not validate: {problems[:3]}")
    request = step("sms_request", "messages.sms_request: numbers, params, texts, segments", steps.sms_request, payload)
    # Written again, and sent, in the step of the round trips: these two show what writing alone costs.
    step(
        "feeds JSON",
        f"feeds.sms_data, JSON, all chunks of {steps.chunk}",
        steps.feeds,
        request,
        "json",
        alternative=True,
    )
    step(
        "feeds XML", f"feeds.sms_data, XML, all chunks of {steps.chunk}", steps.feeds, request, "xml", alternative=True
    )
    feeds_count = -(-count // steps.chunk)
    step(
        "feeds + round trips in turn",
        f"{feeds_count} feeds written and sent one after the other, replies read",
        steps.sent,
        request,
        1,
        alternative=True,
    )
    chunks = step(
        f"feeds + round trips, {steps.at_once} at once",
        f"{feeds_count} feeds written and sent as the connector sends them (ALLMYSMS_CONCURRENT_FEEDS)",
        steps.sent,
        request,
        steps.at_once,
    )
    result = step("sms_result", "feeds.sms_result over all chunks", feeds.sms_result, request, chunks)
    step("serialise result", "Flask JSON response of the result", _flask_json, result)
    return timings


def _flask_json(result: dict) -> bytes:
    app = Flask(__name__)
    with app.app_context():
        return app.json.response(result).get_data()


def profile(func, *args, top: int = 5) -> dict:
    """Run func(*args) under cProfile: the `top` functions by cumulative and by own time (func excluded)."""
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    try:
        func(*args)
    finally:
        profiler.disable()
    total = time.perf_counter() - started
    stats = pstats.Stats(profiler).stats
    entry = _code_key(func)
    rows = [
        {"function": _label(key), "calls": calls, "own_s": own, "cumulative_s": cumulative}
        for key, (_, calls, own, cumulative, _) in stats.items()
        if key != entry and key[0] != "~" and not key[0].endswith("breakdown.py")
    ]

    def by(field):
        return [
            dict(r, own_s=round(r["own_s"], 3), cumulative_s=round(r["cumulative_s"], 3))
            for r in sorted(rows, key=lambda r: r[field], reverse=True)[:top]
        ]

    return {
        "function": _label(entry) if entry else getattr(func, "__qualname__", repr(func)),
        "profiled_s": round(total, 3),
        "by_cumulative": by("cumulative_s"),
        "by_own_time": by("own_s"),
    }


def _code_key(func):
    code = getattr(getattr(func, "__func__", func), "__code__", None)
    return (code.co_filename, code.co_firstlineno, code.co_name) if code else None


def _label(key) -> str:
    filename, line, name = key
    path = filename.replace("\\", "/")
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif path.startswith(str(_REPO)):
        path = path[len(str(_REPO)) + 1 :]
    return f"{path}:{line}({name})"
