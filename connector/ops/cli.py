"""The `connector` command: serve, worker, migrate, check, sandbox, send, export, docs."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from connector import config
from connector.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="connector", description="AllMySMS connector for no-code platforms.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service under gunicorn (with the sandbox unless "
                                              "ALLMYSMS_BASE_URL is set)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1, or CONNECTOR_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8000, or PORT)")
    serve.add_argument("--workers", type=int, help="web worker processes (default: one per CPU core, at least 2; or CONNECTOR_WORKERS)")
    commands.add_parser("check", help="check the configuration and the manifest, then exit")
    commands.add_parser("migrate", help="bring the database's schema to this version (the Procfile's release step)")
    worker = commands.add_parser("worker", help="deliver events to subscribers (run as many as needed)")
    worker.add_argument("--parent", type=int, help="stop when this process is gone (used by `connector serve`)")
    sandbox = commands.add_parser("sandbox", help="run only the built-in AllMySMS sandbox")
    sandbox.add_argument("--port", type=int, default=8100)
    sandbox.add_argument("--host", default="127.0.0.1")
    commands.add_parser("manifest", help="print the resolved manifest as JSON")
    reply = commands.add_parser("reply", help="sandbox: simulate a recipient answering an SMS")
    reply.add_argument("--phone", required=True, help="the number answering, e.g. 0611111111")
    reply.add_argument("--message", required=True)
    reply.add_argument("--sms-id", help="the SMS answered (default: the last one sent to that number)")
    reply.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    reply.add_argument("--login", default="demo")
    reply.add_argument("--api-key", default="demo-api-key")
    send = commands.add_parser("send", help="send one SMS to every recipient of a CSV file through the running "
                                            "service, in chunks, showing progress")
    send.add_argument("--file", required=True, help="CSV: a number a line, then the values of #param_1#, ...")
    send.add_argument("--message", required=True)
    send.add_argument("--chunk-size", type=int, default=1000, help="recipients a request (default 1000)")
    send.add_argument("--skip-invalid", action="store_true", help="send to the valid numbers, list the others")
    send.add_argument("--url", default="http://127.0.0.1:8000", help="the running service")
    send.add_argument("--login", default="demo")
    send.add_argument("--api-key", default="demo-api-key")
    export = commands.add_parser("export", help="write a platform's connector, generated from the manifest")
    export.add_argument("platform", nargs="?", help="one of the platforms `--list` shows")
    export.add_argument("out_dir", nargs="?", help="the directory to write to (created if needed)")
    export.add_argument("--list", action="store_true", help="list the platforms and exit")
    export.add_argument("--base-url", default=None,
                        help="the service's public URL, as platforms will call it (default CONNECTOR_PUBLIC_URL, "
                             "else https://connector.example.com)")
    docs = commands.add_parser("docs", help="rewrite the README's generated sections")
    docs.add_argument("--readme", default="README.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    try:
        overrides = {k: v for k, v in {"CONNECTOR_HOST": getattr(args, "host", None),
                                       "PORT": getattr(args, "port", None),
                                       "CONNECTOR_WORKERS": getattr(args, "workers", None)}.items()
                     if v is not None and args.command == "serve"}
        settings = config.load(overrides=overrides)
        from connector.observe import logs
        logs.configure(settings)
        if args.command == "serve":
            from connector.ops.serving import serve as run
            run(settings)
        elif args.command == "reply":
            import requests
            body = {"phone_number": args.phone, "message": args.message}
            if args.sms_id:
                body["sms_id"] = args.sms_id
            try:
                answer = requests.post(args.url.rstrip("/") + "/v1/sandbox/replies", json=body,
                                       auth=(args.login, args.api_key), timeout=30)
            except requests.ConnectionError:
                print(f"nothing answers at {args.url}: start the service with `connector serve`, or give its "
                      "address with --url", file=sys.stderr)
                return 1
            print(json.dumps(answer.json(), indent=2, ensure_ascii=False))
            return 0 if answer.status_code == 201 else 1
        elif args.command == "send":
            from connector.ops import bulk
            recipients = bulk.read_recipients(args.file)
            if not recipients:
                print(f"{args.file} holds no recipient", file=sys.stderr)
                return 2
            return bulk.send(args.url, (args.login, args.api_key), args.message, recipients,
                             chunk_size=max(1, args.chunk_size), skip_invalid=args.skip_invalid)
        elif args.command == "worker":
            from connector.ops.serving import run_worker
            if not args.parent:  # under `connector serve`, the directory is set and swept already
                from connector.observe.metrics import prepare_directory
                prepare_directory(settings["CONNECTOR_DATA_DIR"])
            run_worker(settings, args.parent)
        elif args.command == "migrate":
            from sqlalchemy import create_engine

            from connector.storage import schema
            from connector.storage.store import default_url, engine_url
            engine = create_engine(engine_url(settings["DATABASE_URL"] or default_url(settings["CONNECTOR_DATA_DIR"])))
            before, after = schema.migrate(engine)
            engine.dispose()
            current = " (already current)" if after in schema.known() else (
                f" (newer than this version's {schema.head()}, which it declares readable by it: left as it is)")
            print(f"database schema at {after}" + (current if before == after else
                                                  f" (was {before or 'empty'})"))
        elif args.command == "check":
            from connector.description import manifest
            loaded = manifest.load()
            print(f"ok: {len(loaded.actions)} actions, {len(loaded.triggers)} triggers, configuration valid")
        elif args.command == "manifest":
            from connector.description import manifest
            json.dump(manifest.load().describe(), sys.stdout, indent=2, ensure_ascii=False)
            print()
        elif args.command == "docs":
            from pathlib import Path

            from connector.ops import docs as docs_module
            from connector.description import manifest
            path = Path(args.readme)
            path.write_text(docs_module.update_readme(path.read_text(encoding="utf-8"), manifest.load()),
                            encoding="utf-8")
            print(f"updated {path}")
        elif args.command == "export":
            from pathlib import Path

            from connector import exports
            from connector.description import manifest
            if args.list or not args.platform:
                for name, about in exports.platforms().items():
                    print(f"{name:14} {about}")
                return 0
            if args.platform not in exports.platforms():
                print(f"unknown platform {args.platform!r}; `connector export --list` shows them", file=sys.stderr)
                return 2
            if not args.out_dir:
                print("give the directory to write to: connector export <platform> <out-dir>", file=sys.stderr)
                return 2
            base_url = args.base_url or settings["CONNECTOR_PUBLIC_URL"] or exports.DEFAULT_BASE_URL
            written = exports.write(args.platform, manifest.load(), Path(args.out_dir), base_url)
            print(f"wrote {len(written)} files for {args.platform} to {args.out_dir} (service at {base_url})")
        elif args.command == "sandbox":
            from connector.sandbox import create_sandbox_app, make_sandbox_server
            server = make_sandbox_server(create_sandbox_app(), args.host, args.port)
            print(f"Sandbox on http://{args.host}:{server.server_port} (demo login 'demo', API key "
                  "'demo-api-key')", flush=True)
            server.serve_forever()
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
