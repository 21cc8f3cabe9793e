"""What the benchmarks print and keep: progress lines, the results table, the machine they ran on."""

from __future__ import annotations

import base64
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class Rows:
    """The table's rows: a measure, its value, what it is compared with, and a verdict."""

    def __init__(self):
        self.rows: list[dict] = []

    def info(self, measure: str, value: str, baseline: str = "") -> None:
        self.rows.append(
            {"measure": measure, "value": value, "baseline_or_target": baseline, "verdict": "info", "ok": None}
        )

    def judged(self, measure: str, value: str, target: str, ok: bool) -> None:
        self.rows.append(
            {
                "measure": measure,
                "value": value,
                "baseline_or_target": target,
                "verdict": "ok" if ok else "MISSED",
                "ok": ok,
            }
        )


def table(rows: list[dict]) -> str:
    header = {"measure": "measure", "value": "value", "baseline_or_target": "baseline/target", "verdict": "verdict"}
    columns = list(header)
    widths = {c: max(len(str(r[c])) for r in [header, *rows]) for c in columns}
    right = {"value"}

    def line(r):
        return "  ".join(
            str(r[c]).rjust(widths[c]) if c in right else str(r[c]).ljust(widths[c]) for c in columns
        ).rstrip()

    rule = "  ".join("-" * widths[c] for c in columns)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def basic_auth(login: str, api_key: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{api_key}".encode()).decode()


def machine() -> dict:
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", None
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": dirty,
    }


def say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def exit_on_sigterm(signum, frame):
    """A SIGTERM handler: unwind like Ctrl-C does, so the servers are stopped on the way out."""
    raise SystemExit(128 + signum)


def shown(path: Path) -> str:
    """A path as the reader would type it from the repository root."""
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def publish(results: dict, rows: list[dict], out: Path, logs: Path, *, notes=(), verdict: str = "") -> None:
    """Print the table (then ``notes``), keep everything measured in ``out`` as JSON, and say where."""
    results["table"] = rows
    print()
    print(table(rows))
    for note in notes:
        print(note)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(
        f"\n{results['total_s']} s in all; {verdict + '; ' if verdict else ''}results in {shown(out)}, "
        f"server logs in {shown(logs)}/"
    )


def run(main) -> None:
    """Run a benchmark's main(); Ctrl-C ends it once its servers are stopped."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; servers stopped")
        sys.exit(130)
