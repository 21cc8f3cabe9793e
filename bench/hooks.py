"""The subscriber side of the trigger benchmarks: bench/receiver.py processes, and the connector's inbound
URL and subscriptions as a platform reaches them."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
import servers

BENCH = Path(__file__).resolve().parent
TRIGGER = "delivery_receipt"


class Receivers:
    """The subscribers: receiver processes, with subscription k sent to receiver k mod their number."""

    def __init__(self, running: list[servers.Server]):
        self.servers = running
        self.session = requests.Session()

    @classmethod
    def start(cls, fleet: servers.Fleet, count: int) -> Receivers:
        running = []
        for n in range(count):
            port = servers.free_port()
            argv = [sys.executable, str(BENCH / "receiver.py"), "--port", str(port)]
            running.append(fleet.start(f"receiver-{n}", argv, servers.clean_env(), port, "/stats", workers=0))
        return cls(running)

    def target(self, k: int, delay_ms: int = 0) -> str:
        server = self.servers[k % len(self.servers)]
        return f"{server.url}/hook/{k}" + (f"?delay_ms={delay_ms}" if delay_ms else "")

    def counts(self) -> list[int]:
        return [self.session.get(f"{s.url}/stats", timeout=10).json()["count"] for s in self.servers]

    def records_since(self, starts: list[int]) -> list[list]:
        """Every delivery recorded since `starts`: [path, sms_id, webhook-id, arrival time, event id]."""
        return [
            record
            for server, start in zip(self.servers, starts)
            for record in self.session.get(f"{server.url}/records", params={"start": start}, timeout=30).json()
        ]

    def wait(self, starts: list[int], expected: int, *, deadline: float, alive=None) -> int:
        """Until `expected` deliveries arrived since `starts`, time is up, or `alive()` says the sender died."""
        while True:
            got = sum(now - before for now, before in zip(self.counts(), starts))
            if got >= expected or time.monotonic() > deadline or (alive is not None and not alive()):
                return got
            time.sleep(0.05)


class Hooks:
    """The connector as a platform sees it: the account's inbound URL, subscriptions."""

    def __init__(self, url: str, auth: tuple[str, str]):
        self.url = url
        self.session = requests.Session()
        self.session.auth = auth

    def inbound_path(self) -> str:
        answer = self.session.get(f"{self.url}/v1/me", timeout=30)
        answer.raise_for_status()
        return urlsplit(answer.json()["inbound_url"]).path

    def subscribe(self, target_url: str, trigger: str = TRIGGER) -> dict:
        answer = self.session.post(
            f"{self.url}/v1/triggers/{trigger}/subscriptions", json={"target_url": target_url}, timeout=30
        )
        if answer.status_code != 201:
            raise RuntimeError(f"subscribing {target_url} answered HTTP {answer.status_code}: {answer.text[:300]}")
        return answer.json()
