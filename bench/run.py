"""Benchmark of the connector's send_sms on 127.0.0.1, against a bare Flask passthrough and against targets.

Usage (from the repository root):

    .venv/bin/python bench/run.py            # full run, about 100 seconds
    .venv/bin/python bench/run.py --quick    # smoke run, about 20 seconds
    .venv/bin/python bench/run.py --seconds 5 --clients 32

What it does, all on loopback, with servers started here and always stopped on exit (even on Ctrl-C):

1. Throughput. The AllMySMS sandbox runs under gunicorn (2 workers x 8 threads, one account with 10**12
   credits in each worker's own in-memory state). `connector serve` runs with ALLMYSMS_BASE_URL pointing
   at it (CONNECTOR_WORKERS=2, CONNECTOR_THREADS=8), and bench/passthrough.py, a bare Flask app that
   forwards a prebuilt feed to the same sandbox with requests (as a bare integration would; the connector
   calls AllMySMS through urllib3's pool), runs under gunicorn with the same workers, threads and
   access log. After a warm-up, each is driven in turn (A B A B A B; quick: A B A B) by the same closed-loop
   load: N client threads posting a single-recipient send_sms body for S seconds. The best round of each is kept:
   requests/s, p50 and p99 latency, the CPU each server's processes spent per request (CPU-us, the figure
   that survives a change of machine), and the ratio connector/passthrough (target >= 0.9).
2. Large personalised sends, against a bare bulk passthrough. One send_sms with 10,000 then 100,000
   recipients, two params each, goes to a fresh `connector serve` with CONNECTOR_WORKERS=1 (so the one web
   worker does all the work) and to bench/passthrough.py under the same gunicorn settings with 1 worker,
   which reads the same body and posts the same feeds (written before the run, with the connector's own
   code, ALLMYSMS_RECIPIENTS_PER_FEED recipients each) to the same sandbox one after the other, as a bare
   integration would. They take turns (bare, connector, bare, connector); the best time of each is kept.
   Targets: connector / bare <= 1.3 (same run), and <= 100 MB peak growth of the connector web worker's RSS
   (psutil, sampled every 20 ms). Also shown: the CPU per recipient of each server's worker and of the
   sandbox, and the RSS growth of the connector's delivery processes meanwhile (not judged: they take no
   part in a send).
3. Where the time goes, in-process for the largest size: body parsing, schema validation, sms_request,
   the feeds (JSON and XML), the round trips to the sandbox (in turn, and ALLMYSMS_CONCURRENT_FEEDS at
   once, as the connector sends them), the result and its serialisation, each in wall and CPU seconds;
   plus a cProfile of schema validation and of sms_request (top 5 by cumulative and by own time).

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

TARGETS = {"ratio": 0.9, "large_ratio": 1.3, "rss_growth_mb": 100.0}

FULL = {
    "seconds": 10.0,
    "warmup": 3.0,
    # The machine's share of its cores moves from one 10 s round to the next: three rounds each, taking turns.
    "rounds": 3,
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
        results["large_sends"] = _large_sends(fleet, sandbox, plan)
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


def _start_passthrough(
    fleet: servers.Fleet, sandbox: servers.Server, workers: int = SERVER_WORKERS, bulk_sizes: tuple[int, ...] = ()
) -> servers.Server:
    port = servers.free_port()
    argv = servers.gunicorn_argv(port, workers, SERVER_THREADS) + [
        "--access-logfile",
        "-",
        "--access-logformat",
        servers.ACCESS_LOG_FORMAT,
        "--pythonpath",
        str(BENCH),
        f"passthrough:create_app(pool_size={SERVER_THREADS * 2})",
    ]
    name = "passthrough-bulk" if bulk_sizes else "passthrough"
    _say(f"{name}: gunicorn {workers}x{SERVER_THREADS} on port {port}")
    env = servers.clean_env(
        PASSTHROUGH_UPSTREAM=sandbox.url, PASSTHROUGH_BULK_SIZES=",".join(str(size) for size in bulk_sizes)
    )
    # Writing the feeds of 100,000 recipients takes the worker a few seconds before it answers.
    return fleet.start(name, argv, env, port, "/v1/manifest", workers=workers)


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

    def measured(name: str, seconds: float) -> dict:
        """One round, with the CPU the server's processes (master, web and delivery workers) spent per request."""
        meter = servers.CpuMeter(targets[name].processes()).start()
        result = drive(name, seconds)
        cores = meter.stop()
        cpu_us = cores * result.seconds / result.ok * 1e6 if result.ok else None
        _say(
            f"round {name}: {result.rate:.0f} req/s, p50 {result.percentile(50) * 1000:.1f} ms, "
            f"p99 {result.percentile(99) * 1000:.1f} ms, {result.errors} errors, "
            f"server {cores:.2f} cores ({cpu_us or 0:.0f} CPU-us/request), client {result.client_cpu:.2f} cores"
        )
        return {**result.summary(), "server_cores": round(cores, 2), "server_cpu_us_per_request": _rounded(cpu_us)}

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
            rounds.append({"round": round_number, "target": name, **measured(name, plan["seconds"])})
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


def _large_sends(fleet: servers.Fleet, sandbox: servers.Server, plan: dict) -> list[dict]:
    bare = _start_passthrough(fleet, sandbox, workers=1, bulk_sizes=plan["sizes"])
    try:
        return [_large_send(fleet, sandbox, bare, size, plan["repeats"]) for size in plan["sizes"]]
    finally:
        fleet.stop(bare)


def _large_send(fleet: servers.Fleet, sandbox: servers.Server, bare: servers.Server, size: int, repeats: int) -> dict:
    """The same send to a fresh connector and to the bare bulk passthrough, taking turns."""
    server = _start_connector(fleet, sandbox, f"connector-1-worker-{size}", workers=1)
    headers = {"Content-Type": "application/json", "Authorization": report.basic_auth(LOGIN, API_KEY)}
    try:
        # A few small sends first: imports, pools and caches are warm before the baseline is taken.
        small = json.dumps(SAMPLE_BODY).encode()
        for port in (bare.port, server.port):
            for _ in range(3):
                _post(port, small, headers, timeout=30)
        body = json.dumps(breakdown.personalised_payload(size)).encode()
        runs: dict[str, list[dict]] = {"bare": [], "connector": []}
        for _ in range(repeats):
            for name, target in (("bare", bare), ("connector", server)):
                run = _one_large_send(name, target, sandbox, body, headers, size)
                runs[name].append(run)
    finally:
        fleet.stop(server)
    best = {
        name: min((r["seconds"] for r in done if not r.get("problem")), default=None) for name, done in runs.items()
    }
    fastest = {
        name: min((r for r in done if not r.get("problem")), key=lambda r: r["seconds"], default=None)
        for name, done in runs.items()
    }
    ok = all(not r.get("problem") for done in runs.values() for r in done)
    return {
        "recipients": size,
        "body_mb": round(len(body) / servers.MB, 2),
        "runs": runs,
        "ok": ok,
        "best_seconds": best["connector"],
        "bare_best_seconds": best["bare"],
        "ratio": round(best["connector"] / best["bare"], 3) if best["connector"] and best["bare"] else None,
        "cpu_us_per_recipient": {name: run and run["worker_cpu_us_per_recipient"] for name, run in fastest.items()},
        "sandbox_cpu_us_per_recipient": {
            name: run and run["sandbox_cpu_us_per_recipient"] for name, run in fastest.items()
        },
        # The first send into a fresh worker grows it most; later ones reuse the memory it kept.
        "max_rss_growth_mb": max(r["rss_growth_mb"] for r in runs["connector"]),
        "delivery_rss_growth_mb": max(r.get("delivery_rss_growth_mb", 0.0) for r in runs["connector"]),
    }


def _one_large_send(
    name: str, target: servers.Server, sandbox: servers.Server, body: bytes, headers: dict, size: int
) -> dict:
    web = _web_workers(target)
    delivery = [p for p in target.workers() if p not in web]
    cpu = servers.CpuMeter(web).start()
    sandbox_cpu = servers.CpuMeter(sandbox.workers()).start()
    with servers.RssSampler(web) as rss, servers.RssSampler(delivery) as delivery_rss:
        started = time.perf_counter()
        status, reply = _post(target.port, body, headers, timeout=LARGE_SEND_TIMEOUT)
        seconds = time.perf_counter() - started
    used = cpu.stop() * seconds
    sandbox_used = sandbox_cpu.stop() * seconds
    run = {
        "seconds": round(seconds, 3),
        "status": status,
        "worker_cpu_s": round(used, 3),
        "worker_cpu_us_per_recipient": round(used / size * 1e6, 2),
        "sandbox_cpu_us_per_recipient": round(sandbox_used / size * 1e6, 2),
        "rss_baseline_mb": round(rss.baseline / servers.MB, 1),
        "rss_growth_mb": round(rss.growth_mb, 1),
        "rss_samples": rss.samples,
    }
    if delivery:
        run["delivery_rss_growth_mb"] = round(delivery_rss.growth_mb, 1)
    run.update(_check_reply(status, reply, size) if name == "connector" else _check_bare_reply(status, reply, size))
    _say(
        f"{size:,} recipients, {name}: HTTP {status} in {seconds:.2f} s, worker {used:.2f} CPU-s "
        f"({run['worker_cpu_us_per_recipient']:.1f} CPU-us/recipient), sandbox "
        f"{run['sandbox_cpu_us_per_recipient']:.1f} CPU-us/recipient, worker RSS +{rss.growth_mb:.1f} MB"
        + (f" ({run['problem']})" if run.get("problem") else "")
    )
    return run


def _web_workers(server: servers.Server) -> list:
    """The gunicorn workers of a server, without the delivery worker processes `connector serve` also starts."""
    return [p for p in server.workers() if "--parent" not in _cmdline(p)]


def _cmdline(process) -> list[str]:
    try:
        return process.cmdline()
    except Exception:  # gone, or not ours to read
        return []


def _check_bare_reply(status: int, reply: bytes, size: int) -> dict:
    try:
        replies = json.loads(reply)
    except ValueError:
        return {"problem": f"the reply is not JSON: {reply[:200]!r}"}
    replies = replies if isinstance(replies, list) else [replies]
    sent = sum(int(r.get("nbContacts", 0)) for r in replies if isinstance(r, dict) and r.get("status") == 100)
    if status != 200 or sent != size:
        return {"problem": f"HTTP {status}, {sent} recipients sent, expected {size}"}
    return {"campaigns": len(replies)}


def _rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


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
        step["cpu_s"] = round(step["cpu_s"], 3)
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
    row(
        "send_sms CPU per request, all server processes",
        _cpu_text(best_c.get("server_cpu_us_per_request")),
        f"passthrough {_cpu_text(best_p.get('server_cpu_us_per_request'))}",
    )
    row("send_sms p50 latency, connector", f"{best_c['p50_ms']:.1f} ms", f"passthrough {best_p['p50_ms']:.1f} ms")
    row("send_sms p99 latency, connector", f"{best_c['p99_ms']:.1f} ms", f"passthrough {best_p['p99_ms']:.1f} ms")
    errors = sum(r["errors"] for r in t["rounds"])
    judged("failed requests during throughput rounds", str(errors), "0", errors == 0)

    for send in results["large_sends"]:
        size = send["recipients"]
        label = f"{size // 1000}k recipients x 2 params"
        if send["ratio"] is None:
            problem = next(
                (r["problem"] for done in send["runs"].values() for r in done if r.get("problem")), "no run succeeded"
            )
            judged(f"{label}: one send_sms, connector / bare bulk (1 worker)", "failed", problem[:60], False)
        else:
            judged(
                f"{label}: one send_sms, connector / bare bulk (1 worker)",
                f"{send['ratio']:.2f} ({send['best_seconds']:.2f} s / {send['bare_best_seconds']:.2f} s)",
                f"<= {TARGETS['large_ratio']:g}",
                send["ratio"] <= TARGETS["large_ratio"] and send["ok"],
            )
        cpu, sandbox_cpu = send["cpu_us_per_recipient"], send["sandbox_cpu_us_per_recipient"]
        row(
            f"{label}: CPU per recipient, connector web worker",
            _cpu_text(cpu.get("connector")),
            f"bare {_cpu_text(cpu.get('bare'))}; sandbox {_cpu_text(sandbox_cpu.get('connector'))} / "
            f"{_cpu_text(sandbox_cpu.get('bare'))}",
        )
        judged(
            f"{label}: peak connector web worker RSS growth",
            f"{send['max_rss_growth_mb']:.1f} MB",
            f"<= {TARGETS['rss_growth_mb']:g} MB",
            send["max_rss_growth_mb"] <= TARGETS["rss_growth_mb"],
        )
        row(f"{label}: delivery processes' RSS growth meanwhile", f"{send['delivery_rss_growth_mb']:.1f} MB", "")

    size = results["in_process"]["recipients"]
    total = sum(s["seconds"] for s in results["in_process"]["steps"] if not s.get("alternative"))
    for step in results["in_process"]["steps"]:
        share = "not in the total" if step.get("alternative") else f"{step['seconds'] / total:.0%} of steps"
        row(
            f"in-process {size // 1000}k: {step['step']}",
            f"{step['seconds']:.3f} s",
            f"{share}; {step['cpu_s']:.3f} CPU-s, {step['cpu_s'] / size * 1e6:.1f} CPU-us/recipient",
        )
    row(f"in-process {size // 1000}k: all steps", f"{total:.3f} s", "")
    return rows


def _cpu_text(us: float | None) -> str:
    return "n/a" if us is None else f"{us:.1f} CPU-us"


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
