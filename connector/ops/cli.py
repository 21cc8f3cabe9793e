"""The `connector` command: serve, worker, migrate, check, sandbox, send, export, docs."""

from __future__ import annotations

import json
import logging
import sys

import click

from connector import config
from connector.errors import ConfigError

_DEFAULT_URL = "http://127.0.0.1:8000"


class _Commands(click.Group):
    """A group that reports a configuration problem as one clear message and exit status 2, whichever
    command found it, rather than as a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as error:
            click.echo(str(error), err=True)
            ctx.exit(2)


@click.group(
    "connector", cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120}
)
def connector() -> None:
    """AllMySMS connector for no-code platforms."""


def _settings(**overrides) -> dict:
    """The validated settings (environment, then ``overrides`` not None), with the process's logs set up
    as they say: every command starts here, so a bad setting stops any of them."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = config.load(overrides={k: v for k, v in overrides.items() if v is not None})
    from connector.observe import logs

    logs.configure(settings)
    return settings


def _account_options(command):
    """--url, --login and --api-key: how the commands that call the running service reach it."""
    for option in reversed(
        [
            click.option("--url", default=_DEFAULT_URL, show_default=True, help="the running service"),
            click.option("--login", default="demo", show_default=True),
            click.option("--api-key", default="demo-api-key", show_default=True),
        ]
    ):
        command = option(command)
    return command


@connector.command(help="run the service under gunicorn (with the sandbox unless ALLMYSMS_BASE_URL is set)")
@click.option("--host", help="address to listen on (default 127.0.0.1, or CONNECTOR_HOST)")
@click.option("--port", type=int, help="port (default 8000, or PORT)")
@click.option(
    "--workers", type=int, help="web worker processes (default: one per CPU core, at least 2; or CONNECTOR_WORKERS)"
)
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    settings = _settings(CONNECTOR_HOST=host, PORT=port, CONNECTOR_WORKERS=workers)
    from connector.ops.serving import serve as run

    run(settings)


@connector.command(help="check the configuration and the manifest, then exit")
def check() -> None:
    _settings()
    from connector.description import manifest

    loaded = manifest.load()
    click.echo(
        f"ok: {len(loaded.actions)} actions, {len(loaded.searches)} searches, {len(loaded.triggers)} triggers, "
        "configuration valid"
    )


@connector.command(help="bring the database's schema to this version (the Procfile's release step)")
def migrate() -> None:
    settings = _settings()
    from connector import services
    from connector.storage import schema

    before, after = services.migrate(settings)
    current = (
        " (already current)"
        if after in schema.known()
        else (f" (newer than this version's {schema.head()}, which it declares readable by it: left as it is)")
    )
    click.echo(f"database schema at {after}" + (current if before == after else f" (was {before or 'empty'})"))


@connector.command(help="deliver events to subscribers (run as many as needed)")
@click.option("--parent", type=int, help="stop when this process is gone (used by `connector serve`)")
def worker(parent: int | None) -> None:
    settings = _settings()
    from connector.ops.serving import run_worker

    if not parent:  # under `connector serve`, the directory is set and swept already
        from connector.observe.metrics import prepare_directory

        prepare_directory(settings["CONNECTOR_DATA_DIR"])
    run_worker(settings, parent)


@connector.command(help="run only the built-in AllMySMS sandbox")
@click.option("--port", type=int, default=8100, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def sandbox(port: int, host: str) -> None:
    _settings()
    from connector.sandbox import create_sandbox_app, make_sandbox_server

    server = make_sandbox_server(create_sandbox_app(), host, port)
    click.echo(f"Sandbox on http://{host}:{server.server_port} (demo login 'demo', API key 'demo-api-key')")
    server.serve_forever()


@connector.command("manifest", help="print the resolved manifest as JSON")
def print_manifest() -> None:
    _settings()
    from connector.description import manifest

    click.echo(json.dumps(manifest.load().describe(), indent=2, ensure_ascii=False))


@connector.command(help="sandbox: simulate a recipient answering an SMS")
@click.option("--phone", required=True, help="the number answering, e.g. 0611111111")
@click.option("--message", required=True)
@click.option("--sms-id", help="the SMS answered (default: the last one sent to that number)")
@_account_options
@click.pass_context
def reply(ctx: click.Context, phone: str, message: str, sms_id: str | None, url: str, login: str, api_key: str) -> None:
    _settings()
    import requests

    body = {"phone_number": phone, "message": message}
    if sms_id:
        body["sms_id"] = sms_id
    try:
        answer = requests.post(url.rstrip("/") + "/v1/sandbox/replies", json=body, auth=(login, api_key), timeout=30)
    except requests.ConnectionError:
        click.echo(
            f"nothing answers at {url}: start the service with `connector serve`, or give its address with --url",
            err=True,
        )
        ctx.exit(1)
    click.echo(json.dumps(answer.json(), indent=2, ensure_ascii=False))
    ctx.exit(0 if answer.status_code == 201 else 1)


@connector.command(
    help="send one SMS to every recipient of a CSV file through the running service, in chunks, showing progress"
)
@click.option("--file", "path", required=True, help="CSV: a number a line, then the values of #param_1#, ...")
@click.option("--message", required=True)
@click.option("--chunk-size", type=int, default=1000, help="recipients a request (default 1000)")
@click.option("--skip-invalid", is_flag=True, help="send to the valid numbers, list the others")
@_account_options
@click.pass_context
def send(
    ctx: click.Context, path: str, message: str, chunk_size: int, skip_invalid: bool, url: str, login: str, api_key: str
) -> None:
    _settings()
    from connector.ops import bulk

    recipients = bulk.read_recipients(path)
    if not recipients:
        click.echo(f"{path} holds no recipient", err=True)
        ctx.exit(2)
    ctx.exit(
        bulk.send(
            url,
            (login, api_key),
            message,
            recipients,
            chunk_size=max(1, chunk_size),
            skip_invalid=skip_invalid,
            out=sys.stderr,
        )
    )


@connector.command(
    help="write a platform's connector, generated from the manifest\n\nPLATFORM is one of the "
    "platforms --list shows; OUT_DIR is the directory to write to (created if needed)."
)
@click.argument("platform", required=False)
@click.argument("out_dir", required=False)
@click.option("--list", "listing", is_flag=True, help="list the platforms and exit")
@click.option(
    "--base-url",
    help="the service's public URL, as platforms will call it (default "
    "CONNECTOR_PUBLIC_URL, else https://connector.example.com)",
)
@click.pass_context
def export(ctx: click.Context, platform: str | None, out_dir: str | None, listing: bool, base_url: str | None) -> None:
    settings = _settings()
    from pathlib import Path

    from connector import exports
    from connector.description import manifest

    if listing or not platform:
        for name, about in exports.platforms().items():
            click.echo(f"{name:14} {about}")
        return
    if platform not in exports.platforms():
        click.echo(f"unknown platform {platform!r}; `connector export --list` shows them", err=True)
        ctx.exit(2)
    if not out_dir:
        click.echo("give the directory to write to: connector export <platform> <out-dir>", err=True)
        ctx.exit(2)
    base_url = base_url or settings["CONNECTOR_PUBLIC_URL"] or exports.DEFAULT_BASE_URL
    written = exports.write(platform, manifest.load(), Path(out_dir), base_url)
    click.echo(f"wrote {len(written)} files for {platform} to {out_dir} (service at {base_url})")


@connector.command(help="rewrite the generated sections of README.md and docs/*.md")
@click.option("--root", default=".", show_default=True, help="the repository holding README.md and docs/")
def docs(root: str) -> None:
    _settings()
    from pathlib import Path

    from connector.description import manifest
    from connector.ops import docs as docs_module

    changed = docs_module.update_all(Path(root), manifest.load())
    click.echo("\n".join(f"updated {path}" for path in changed) or "every generated section is current")


def main(argv: list[str] | None = None) -> int:
    """The console script: run the command ``argv`` (default: the process's arguments) and return its exit
    status, 2 for a wrong command line or a bad setting."""
    try:
        status = connector.main(args=argv, prog_name="connector", standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        return 1
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
