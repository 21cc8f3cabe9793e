"""What one delivery worker's turn costs the database, per backend: finish the last turn's outcomes, fan out the
events that came in meanwhile, claim what is due (storage/outbox.py finish_and_claim), with a backlog behind.

Each turn of the default shape: 64 outcomes recorded (one in ten a failure, due again later), 30 new events
fanned out to 10 subscriptions, 64 deliveries claimed (the account asked to come later, as a worker busy with
one account's burst asks), over a backlog of 5,000 due deliveries and 20,000 delivered ones with their
attempts. Events are added between turns by another connection, outside the measure.

Printed per backend: ms per turn (wall, median and p90), and CPU-µs per delivery finished: the benchmark
process's CPU during the turns, plus on PostgreSQL the CPU of the server processes serving the turn's
connections (psutil on their process ids, found by application_name; the WAL writer and checkpointer, shared
with everything else on the server, are not counted).

    .venv/bin/python bench/turns.py [--turns 200] [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import psutil
from databases import POSTGRES_URL, Schemas
from sqlalchemy import text, update

from connector.storage.store import Store
from connector.storage.tables import FAILED, PENDING, SUCCEEDED, deliveries

KEY = "k" * 64
EVENT_TYPE = "sms.delivery_receipt"


def receipts(start: int, count: int) -> list[dict]:
    return [
        {
            "id": f"evt_{n}",
            "type": EVENT_TYPE,
            "timestamp": "2026-12-01T08:30:03Z",
            "data": {"sms_id": f"sms-{n}", "status": "delivered", "phone": "+33600000000"},
            "raw": {"smsId": f"sms-{n}", "status": "1"},
        }
        for n in range(start, start + count)
    ]


def prepare(url: str, args) -> tuple[int, int]:
    """The account, its subscriptions, the delivered history and the due backlog: (account id, next event number)."""
    store = Store(url, secret_key=KEY)
    try:
        account = store.accounts.ensure("bench", "b" * 64)
        for k in range(args.subscriptions):
            store.subscriptions.add(account, "delivery_receipt", EVENT_TYPE, f"https://hooks.example.com/{k}", 1.0)
        n = 0
        for at, count in ((1000.0, args.history), (2000.0, args.backlog)):
            while count > 0:
                step = min(count, 500)
                store.events.add(account, receipts(n, step), at)
                store.events.fan_out(at)
                n += step
                count -= step
            if at == 1000.0:  # delivered long ago, with one attempt each
                with store.engine.begin() as db:
                    db.execute(
                        text(
                            "INSERT INTO attempts (delivery_seq, attempted_at, status_code, latency_ms) "
                            "SELECT seq, 1001.0, 200, 12 FROM deliveries"
                        )
                    )
                    db.execute(update(deliveries).values(status=SUCCEEDED, attempts=1, updated_at=1001.0))
        if not store.sqlite:
            with store.engine.begin() as db:
                db.execute(text("ANALYZE"))
        return account, n
    finally:
        store.close()


def outcomes_of(claimed, now: float) -> list[dict]:
    made = []
    for k, due in enumerate(claimed):
        failed = k % 10 == 9
        made.append(
            {
                "due": due,
                "attempted_at": now - 0.01,
                "status_code": 500 if failed else 200,
                "latency_ms": 12,
                "error": "HTTP 500" if failed else None,
                "status": PENDING if failed else SUCCEEDED,
                "next_attempt_at": now + 5.0 if failed else None,
            }
        )
    return made


def server_cpu(pids: set[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def run(name: str, url: str, args) -> dict:
    account, n = prepare(url, args)
    admin = None
    if name == "postgresql":
        # The turns' connections are told apart from the event writer's by their application_name.
        url = url.replace("application_name=", "application_name=turns_")
        admin = Store(url.replace("application_name=turns_", "application_name=admin_"))
    worker = Store(url, replayable=True, secret_key=KEY)
    writer = Store(url.replace("application_name=turns_", "application_name=writer_"), secret_key=KEY)
    walls, client, finished = [], 0.0, 0
    outcomes: list[dict] = []
    now = 3000.0
    base: dict[int, float] = {}  # server process -> its CPU when the measure began for it
    try:
        for turn in range(args.warmup + args.turns):
            writer.events.add(account, receipts(n, args.events), now)
            n += args.events
            if admin is not None:
                with admin.engine.connect() as db:
                    found = set(
                        db.execute(
                            text("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'turns\\_%'")
                        ).scalars()
                    )
                if turn == args.warmup:
                    base = {}
                for pid in found - base.keys():  # a connection the pool opened since: counted from now
                    base[pid] = server_cpu({pid})
            measured = turn >= args.warmup
            wall, cpu = time.perf_counter(), time.process_time()
            claimed = worker.outbox.finish_and_claim(
                outcomes, now, args.claim, 30.0, later_accounts={account} if args.busy else ()
            )
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if measured:
                walls.append(wall)
                client += cpu
                finished += len(outcomes)
            now += 0.05
            outcomes = outcomes_of(claimed, now)
        server = sum(server_cpu({pid}) - before for pid, before in base.items())
        with worker.engine.connect() as db:
            left = {
                row[0]: row[1] for row in db.execute(text("SELECT status, count(*) FROM deliveries GROUP BY status"))
            }
    finally:
        worker.close()
        writer.close()
        if admin is not None:
            admin.close()
    assert left.get(FAILED, 0) == 0
    walls.sort()
    per = max(finished, 1)
    return {
        "backend": name,
        "turns": len(walls),
        "median_ms": statistics.median(walls) * 1000,
        "p90_ms": walls[int(len(walls) * 0.9)] * 1000,
        "client_us_per_delivery": client / per * 1e6,
        "server_us_per_delivery": server / per * 1e6 if name == "postgresql" else 0.0,
        "pending_left": left.get(PENDING, 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--claim", type=int, default=64)
    parser.add_argument("--events", type=int, default=30, help="new events fanned out per turn")
    parser.add_argument("--subscriptions", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=500, help="events due, x subscriptions")
    parser.add_argument("--history", type=int, default=2000, help="events delivered, x subscriptions")
    parser.add_argument("--not-busy", dest="busy", action="store_false", help="claim without later_accounts")
    args = parser.parse_args()
    os.environ.pop("DATABASE_URL", None)
    print(f"load: {os.getloadavg()[0]:.2f} (1 min), {psutil.cpu_count()} cores")
    results = []
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory() as folder:
            results.append(run("sqlite", f"sqlite:///{folder}/connector.db", args))
    if args.backend in ("postgresql", "both"):
        schemas = Schemas(POSTGRES_URL)
        try:
            results.append(run("postgresql", schemas.new(), args))
        finally:
            schemas.drop_all()
    for r in results:
        print(
            f"{r['backend']:>10}: {r['median_ms']:6.2f} ms/turn median, {r['p90_ms']:6.2f} p90 over {r['turns']} turns;"
            f" CPU-µs per delivery finished: client {r['client_us_per_delivery']:.0f}"
            + (
                f" + server {r['server_us_per_delivery']:.0f} = "
                f"{r['client_us_per_delivery'] + r['server_us_per_delivery']:.0f}"
                if r["backend"] == "postgresql"
                else ""
            )
            + f" (pending left {r['pending_left']})"
        )


if __name__ == "__main__":
    main()
