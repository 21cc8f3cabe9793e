"""The store: one database and a repository per aggregate over it, built together.

``store.accounts``, ``store.events``, ``store.keys``, ``store.subscriptions``, ``store.outbox``, ``store.history``
and ``store.campaigns`` each keep their own tables; ``store.views`` reads across them for the console and
/metrics. Every write that must happen together happens in one transaction of one repository: an event
and its place in the fan-out queue are stored at once, or not at all.
"""

from __future__ import annotations

from connector.storage.accounts import AccountStore
from connector.storage.campaigns import CampaignStore
from connector.storage.database import Database
from connector.storage.events import EventStore
from connector.storage.history import History
from connector.storage.keys import KeyStore
from connector.storage.outbox import Outbox
from connector.storage.subscriptions import SubscriptionStore
from connector.storage.views import Views


class Store:
    """``replayable``: every write through this store can be made again, as a delivery worker's are (see
    Database). ``secret_key``: what subscriptions' signing secrets are derived from."""

    def __init__(self, url: str, replayable: bool = False, secret_key: str | None = None):
        self.database = Database(url, replayable=replayable)
        self.url, self.engine, self.sqlite = self.database.url, self.database.engine, self.database.sqlite
        # Whether the database answers, as this process last found it (see outage.py).
        self.outage = self.database.outage
        self.accounts = AccountStore(self.database)
        self.events = EventStore(self.database)
        self.keys = KeyStore(self.database)
        self.subscriptions = SubscriptionStore(self.database, secret_key)
        self.outbox = Outbox(self.database, self.events, self.subscriptions)
        self.history = History(self.database)
        self.campaigns = CampaignStore(self.database)
        self.views = Views(self.database)

    def probe_write(self) -> None:
        """Commit one small write, to learn whether writes go through again (see Database.probe_write)."""
        self.database.probe_write()

    def close(self) -> None:
        self.campaigns.flush()
        self.database.close()
