"""Benchmark of the connector's send_sms on 127.0.0.1, against a bare Flask passthrough and against targets.

Usage (from the repository root):

    .venv/bin/python bench/run.py            # full run, at most about 3 minutes
    .venv/bin/python bench/run.py --quick    # smoke run, about 20 seconds
    .venv/bin/python bench/run.py --seconds 5 --clients 32

What it does, all on loopback, with servers started here and always stopped on exit (even on Ctrl-C):

1. Throughput. The AllMySMS sandbox runs under gunicorn (2 workers x 8 threads, one account with 10**12
   credits in each worker's own in-memory state). `connector serve` runs with ALLMYSMS_BASE_URL pointing
   at it (CONNECTOR_WORKERS=2, CONNECTOR_THREADS=8), and bench/passthrough.py, a bare Flask app that
   forwards a prebuilt feed to the same sandbox, runs under gunicorn with the same workers, threads and
   access log. After a warm-up, each is driven in turn (A B A B) by the same closed-loop load: N client
   threads posting a single-recipient send_sms body for S seconds. The better round of each is kept:
   requests/s, p50 and p99 latency, and the ratio connector/passthrough (target >= 0.8).
2. Large personalised sends. A fresh `connector serve` with CONNECTOR_WORKERS=1 (so the one worker does
   all the work) receives one send_sms with 10,000 then 100,000 recipients, two params each; the time
   for the POST to complete and the peak growth of the worker's RSS (psutil, sampled every 20 ms) are
   reported. Targets: <= 0.5 s for 10k, <= 4 s for 100k, <= 100 MB growth.
3. Where the time goes, in-process for the largest size: body parsing, schema validation, sms_request,
   the feeds (JSON and XML), the round trips to the sandbox, the result and its serialisation; plus a
   cProfile of schema validation and of sms_request (top 5 by cumulative and by own time).

Prints one table (measure, value, baseline/target, verdict) and writes everything measured to
bench/results/latest.json; the servers' logs are in bench/results/logs/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

# bench/ is on sys.path when this file is run as a script, so its modules import by name.
import breakdown
import loadgen
import report
import servers
from passthrough import SAMPLE_BODY
from report import say as _say

from connector.sending import messages
from connector.sending.upstream import Credentials

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"

LOGIN, API_KEY = "bench", "bench-api-key"
CREDITS = 10**12
SEND_PATH = "/v1/actions/send_sms"
SERVER_WORKERS, SERVER_THREADS = 2, 8
LARGE_SEND_TIMEOUT = 300

TARGETS = {"ratio": 0.8, "send_10000_s": 0.5, "send_100000_s": 4.0, "rss_growth_mb": 100.0}

FULL = {
    "seconds": 10.0,
    "warmup": 3.0,
    "rounds": 2,
    "sizes": (10_000, 100_000),
    "repeats": 2,
    "in_process": 100_000,
    "profile": True,
}
QUICK = {
    "seconds": 2.0,
    "warmup": 1.0,
    "rounds": 2,
    "sizes": (10_000,),
    "repeats": 1,
    "in_process": 10_000,
    "profile": False,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: short rounds, 10k recipients only")
    parser.add_argument("--seconds", type=float, help="length of each throughput round (default 10, quick 2)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads (default 16)")
    args = parser.parse_args(argv)
    plan = dict(QUICK if args.quick else FULL, clients=args.clients)
    if args.seconds:
        plan["seconds"] = args.seconds
    # SIGTERM must unwind like Ctrl-C does, so the servers are stopped on the way out.
    signal.signal(signal.SIGTERM, report.exit_on_sigterm)

    started = time.perf_counter()
    results = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": {k: list(v) if isinstance(v, tuple) else v for k, v in plan.items()},
        "machine": report.machine(),
        "targets": TARGETS,
    }
    with servers.Fleet(RESULTS / "logs") as fleet:
        sandbox = _start_sandbox(fleet)
        results["throughput"] = _throughput(fleet, sandbox, plan)
        results["large_sends"] = [_large_send(fleet, sandbox, size, plan["repeats"]) for size in plan["sizes"]]
        results["in_process"] = _in_process(sandbox, plan)
    results["total_s"] = round(time.perf_counter() - started, 1)
    report.publish(
        results,
        _rows(results),
        RESULTS / "latest.json",
        RESULTS / "logs",
        notes=[_profile_text(p) for p in results["in_process"].get("profiles", [])],
    )
    return 0


# Servers


def _start_sandbox(fleet: servers.Fleet) -> servers.Server:
    sandbox = servers.start_sandbox(
        fleet, {LOGIN: {"api_key": API_KEY, "credits": CREDITS}}, SERVER_WORKERS, SERVER_THREADS, LOGIN
    )
    _say(f"sandbox: gunicorn {SERVER_WORKERS}x{SERVER_THREADS} on port {sandbox.port}")
    return sandbox


def _start_connector(fleet: servers.Fleet, sandbox: servers.Server, name: str, workers: int) -> servers.Server:
    port = servers.free_port()
    # One benchmark login sends a thousand actions a second: the per-account limit would answer 429.
    env = servers.clean_env(
        ALLMYSMS_BASE_URL=sandbox.url,
        PORT=str(port),
        CONNECTOR_HOST=servers.HOST,
        CONNECTOR_WORKERS=str(workers),
        CONNECTOR_THREADS=str(SERVER_THREADS),
        CONNECTOR_ACTIONS_PER_MINUTE="0",
    )
    _say(f"{name}: connector serve {workers}x{SERVER_THREADS} on port {port}")
    return fleet.start(
        name, [sys.executable, "-m", "connector.ops.cli", "serve"], env, port, "/v1/manifest", workers=workers
    )


def _start_passthrough(fleet: servers.Fleet, sandbox: servers.Server) -> servers.Server:
    port = servers.free_port()
    argv = servers.gunicorn_argv(port, SERVER_WORKERS, SERVER_THREADS) + [
        "--access-logfile",
        "-",
        "--access-logformat",
        servers.ACCESS_LOG_FORMAT,
        "--pythonpath",
        str(BENCH),
        f"passthrough:create_app(pool_size={SERVER_THREADS * 2})",
    ]
    _say(f"passthrough: gunicorn {SERVER_WORKERS}x{SERVER_THREADS} on port {port}")
    return fleet.start(
        "passthrough",
        argv,
        servers.clean_env(PASSTHROUGH_UPSTREAM=sandbox.url),
        port,
        "/v1/manifest",
        workers=SERVER_WORKERS,
    )


# 1. Throughput


def _throughput(fleet: servers.Fleet, sandbox: servers.Server, plan: dict) -> dict:
    targets = {
        "connector": _start_connector(fleet, sandbox, "connector", SERVER_WORKERS),
        "passthrough": _start_passthrough(fleet, sandbox),
    }
    body = json.dumps(SAMPLE_BODY).encode()
    headers = {"Content-Type": "application/json", "Authorization": report.basic_auth(LOGIN, API_KEY)}

    def drive(name: str, seconds: float) -> loadgen.LoadResult:
        return loadgen.drive(targets[name].port, SEND_PATH, body, headers, clients=plan["clients"], seconds=seconds)

    for name in targets:
        warm = drive(name, plan["warmup"])
        _say(f"warm-up {name}: {warm.rate:.0f} req/s, {warm.errors} errors")
        if not warm.ok:
            raise RuntimeError(
                f"{name} answered no send_sms during warm-up ({warm.first_error}):\n{targets[name].log_tail()}"
            )
    rounds = []
    for round_number in range(1, plan["rounds"] + 1):
        for name in targets:
            result = drive(name, plan["seconds"])
            _say(
                f"round {round_number} {name}: {result.rate:.0f} req/s, p50 {result.percentile(50) * 1000:.1f} ms, "
                f"p99 {result.percentile(99) * 1000:.1f} ms, {result.errors} errors, "
                f"client {result.client_cpu:.2f} cores"
            )
            rounds.append({"round": round_number, "target": name, **result.summary()})
    for server in targets.values():
        fleet.stop(server)
    best = {
        name: max((r for r in rounds if r["target"] == name), key=lambda r: r["requests_per_s"]) for name in targets
    }
    passthrough_rate = best["passthrough"]["requests_per_s"]
    return {
        "clients": plan["clients"],
        "seconds_per_round": plan["seconds"],
        "rounds": rounds,
        "best": best,
        "ratio": round(best["connector"]["requests_per_s"] / passthrough_rate, 3) if passthrough_rate else None,
    }


# 2. Large personalised sends


def _large_send(fleet: servers.Fleet, sandbox: servers.Server, size: int, repeats: int) -> dict:
    server = _start_connector(fleet, sandbox, f"connector-1-worker-{size}", workers=1)
    headers = {"Content-Type": "application/json", "Authorization": report.basic_auth(LOGIN, API_KEY)}
    try:
        # A few small sends first: imports, pools and caches are warm before the baseline is taken.
        small = json.dumps(SAMPLE_BODY).encode()
        for _ in range(3):
            _post(server.port, small, headers, timeout=30)
        body = json.dumps(breakdown.personalised_payload(size)).encode()
        runs = []
        for _ in range(repeats):
            with servers.RssSampler(server.workers()) as rss:
                started = time.perf_counter()
                status, reply = _post(server.port, body, headers, timeout=LARGE_SEND_TIMEOUT)
                seconds = time.perf_counter() - started
            run = {
                "seconds": round(seconds, 3),
                "status": status,
                "rss_baseline_mb": round(rss.baseline / servers.MB, 1),
                "rss_growth_mb": round(rss.growth_mb, 1),
                "rss_samples": rss.samples,
            }
            run.update(_check_reply(status, reply, size))
            _say(
                f"{size:,} recipients: HTTP {status} in {seconds:.2f} s, worker RSS +{rss.growth_mb:.1f} MB"
                + (f" ({run['problem']})" if run.get("problem") else "")
            )
            runs.append(run)
    finally:
        fleet.stop(server)
    good = [r for r in runs if not r.get("problem")]
    return {
        "recipients": size,
        "body_mb": round(len(body) / servers.MB, 2),
        "runs": runs,
        "ok": len(good) == len(runs),
        "best_seconds": min((r["seconds"] for r in good), default=None),
        # The first send into a fresh worker grows it most; later ones reuse the memory it kept.
        "max_rss_growth_mb": max(r["rss_growth_mb"] for r in runs),
    }


def _check_reply(status: int, reply: bytes, size: int) -> dict:
    try:
        document = json.loads(reply)
    except ValueError:
        return {"problem": f"the reply is not JSON: {reply[:200]!r}"}
    if status != 200:
        return {"problem": f"HTTP {status}: {str(document.get('error', document))[:300]}"}
    if document.get("recipients") != size:
        return {"problem": f"{document.get('recipients')} recipients sent, expected {size}"}
    return {"campaigns": len(document.get("campaign_ids", []))}


def _post(port: int, body: bytes, headers: dict, *, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(servers.HOST, port, timeout=timeout)
    try:
        conn.request("POST", SEND_PATH, body, {**headers, "Content-Length": str(len(body))})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# 3. In-process breakdown


def _in_process(sandbox: servers.Server, plan: dict) -> dict:
    size = plan["in_process"]
    _say(f"in-process breakdown for {size:,} recipients")
    credentials = Credentials(LOGIN, API_KEY)
    steps = breakdown.measure(size, sandbox.url, credentials)
    for step in steps:
        step["seconds"] = round(step["seconds"], 3)
    out = {"recipients": size, "steps": steps}
    if plan["profile"]:
        _say("profiling schema validation and sms_request")
        prepared = breakdown.Steps(sandbox.url, credentials)
        payload = breakdown.personalised_payload(size)
        out["profiles"] = [
            {"recipients": size, **breakdown.profile(prepared.validate, payload)},
            {"recipients": size, **breakdown.profile(messages.sms_request, payload, prepared.rules, datetime.now(UTC))},
        ]
    return out


# The table


def _rows(results: dict) -> list[dict]:
    rows = []

    def row(measure, value, baseline, verdict="info", ok=None):
        rows.append({"measure": measure, "value": value, "baseline_or_target": baseline, "verdict": verdict, "ok": ok})

    def judged(measure, value, baseline, ok):
        row(measure, value, baseline, "ok" if ok else "MISSED", ok)

    t = results["throughput"]
    best_c, best_p = t["best"]["connector"], t["best"]["passthrough"]
    load = f"{t['clients']} clients, best of {len(t['rounds']) // 2} x {t['seconds_per_round']:g} s"
    row(
        f"send_sms throughput, connector ({load})",
        f"{best_c['requests_per_s']:.0f} req/s",
        f"passthrough {best_p['requests_per_s']:.0f} req/s",
    )
    judged(
        "throughput ratio connector/passthrough",
        f"{t['ratio']:.2f}",
        f">= {TARGETS['ratio']}",
        t["ratio"] is not None and t["ratio"] >= TARGETS["ratio"],
    )
    row("send_sms p50 latency, connector", f"{best_c['p50_ms']:.1f} ms", f"passthrough {best_p['p50_ms']:.1f} ms")
    row("send_sms p99 latency, connector", f"{best_c['p99_ms']:.1f} ms", f"passthrough {best_p['p99_ms']:.1f} ms")
    errors = sum(r["errors"] for r in t["rounds"])
    judged("failed requests during throughput rounds", str(errors), "0", errors == 0)

    for send in results["large_sends"]:
        size = send["recipients"]
        label = f"{size // 1000}k recipients x 2 params"
        target = TARGETS.get(f"send_{size}_s")
        if send["best_seconds"] is None:
            problem = next(r["problem"] for r in send["runs"] if r.get("problem"))
            judged(f"{label}: one send_sms (1 worker)", "failed", problem[:60], False)
        elif target is not None:
            judged(
                f"{label}: one send_sms (1 worker)",
                f"{send['best_seconds']:.2f} s",
                f"<= {target:g} s",
                send["best_seconds"] <= target,
            )
        else:
            row(f"{label}: one send_sms (1 worker)", f"{send['best_seconds']:.2f} s", "")
        judged(
            f"{label}: peak worker RSS growth",
            f"{send['max_rss_growth_mb']:.1f} MB",
            f"<= {TARGETS['rss_growth_mb']:g} MB",
            send["max_rss_growth_mb"] <= TARGETS["rss_growth_mb"],
        )

    size = results["in_process"]["recipients"]
    total = sum(s["seconds"] for s in results["in_process"]["steps"])
    for step in results["in_process"]["steps"]:
        share = f"{step['seconds'] / total:.0%} of steps" if total else ""
        row(f"in-process {size // 1000}k: {step['step']}", f"{step['seconds']:.3f} s", share)
    row(f"in-process {size // 1000}k: all steps", f"{total:.3f} s", "")
    return rows


def _profile_text(profiled: dict) -> str:
    lines = [
        f"\ncProfile of {profiled['function']} for {profiled['recipients']:,} recipients "
        f"({profiled['profiled_s']:.2f} s under the profiler):"
    ]
    for title, key, field in (
        ("top 5 by cumulative time", "by_cumulative", "cumulative_s"),
        ("top 5 by own time", "by_own_time", "own_s"),
    ):
        lines.append(f"  {title}:")
        lines += [f"    {r[field]:8.3f} s  {r['calls']:>9,} calls  {r['function']}" for r in profiled[key]]
    return "\n".join(lines)


if __name__ == "__main__":
    report.run(main)
