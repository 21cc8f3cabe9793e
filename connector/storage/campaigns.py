"""The campaigns each account's sends made, read back when a platform polls for receipts; and when AllMySMS was
last read for each account, so that it is asked at most once an interval however often platforms poll."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, or_, select, update

from connector.storage.batching import GroupWriter
from connector.storage.database import Database
from connector.storage.tables import campaigns, upstream_reads

RECEIPTS, REPLIES = "receipts", "replies"


@dataclass(frozen=True)
class Campaign:
    """A campaign to read receipts of: ``messages`` maps each E.164 number to its SMS id."""

    campaign_id: str
    sent_at: float
    messages: dict[str, str]


class CampaignStore:
    """Campaigns recorded as sends end, the ones due for a read, and the per-account read times."""

    def __init__(self, database: Database):
        self.database = database
        # Sends ending at the same moment share one commit: a transaction per send cost a third of the
        # throughput of send_sms.
        self._writer: GroupWriter[list[dict[str, Any]], None] = GroupWriter(self._write)

    def record(self, account_id: int, sent: Iterable[tuple[str, dict[str, str]]], now: float) -> None:
        """Keep the campaigns of a send, each with its numbers' SMS ids; a campaign already kept keeps its row."""
        rows = [
            {
                "account_id": account_id,
                "campaign_id": campaign_id,
                "sent_at": now,
                "settled": 0,
                "messages": json.dumps(messages, separators=(",", ":")),
            }
            for campaign_id, messages in sent
            if campaign_id
        ]
        if rows:
            self._writer.submit(rows)

    def _write(self, jobs: list[list[dict[str, Any]]]) -> list[None]:
        with self.database.writing() as db:
            db.execute(
                self.database.insert(campaigns).on_conflict_do_nothing(index_elements=["account_id", "campaign_id"]),
                [row for rows in jobs for row in rows],
            )
        return [None] * len(jobs)

    def due(self, account_id: int, since: float, limit: int) -> list[Campaign]:
        """The account's campaigns sent since ``since`` and not yet settled, newest first, at most ``limit``."""
        query = (
            select(campaigns.c.campaign_id, campaigns.c.sent_at, campaigns.c.messages)
            .where(campaigns.c.account_id == account_id, campaigns.c.sent_at >= since, campaigns.c.settled == 0)
            .order_by(campaigns.c.sent_at.desc(), campaigns.c.campaign_id.desc())
            .limit(limit)
        )
        with self.database.engine.connect() as db:
            rows = db.execute(query).all()
        return [Campaign(row.campaign_id, row.sent_at, json.loads(row.messages)) for row in rows]

    def messages(self, account_id: int, campaign_ids: Iterable[str]) -> dict[str, dict[str, str]]:
        """The numbers' SMS ids of those of ``campaign_ids`` the account's sends made, by campaign."""
        wanted = sorted(set(campaign_ids))
        if not wanted:
            return {}
        query = select(campaigns.c.campaign_id, campaigns.c.messages).where(
            campaigns.c.account_id == account_id, campaigns.c.campaign_id.in_(wanted)
        )
        with self.database.engine.connect() as db:
            return {row.campaign_id: json.loads(row.messages) for row in db.execute(query)}

    def forget(self, account_id: int, before: float) -> int:
        """Drop the account's campaigns sent before ``before``: too old to be read again. How many went."""
        with self.database.writing() as db:
            return db.execute(
                delete(campaigns).where(campaigns.c.account_id == account_id, campaigns.c.sent_at < before)
            ).rowcount

    def read(self, account_id: int, campaign_id: str, now: float, settled: bool) -> None:
        """Note that a campaign's receipts were read; ``settled``: all of them final, never to be read again."""
        with self.database.writing() as db:
            db.execute(
                update(campaigns)
                .where(campaigns.c.account_id == account_id, campaigns.c.campaign_id == campaign_id)
                .values(read_at=now, settled=int(settled))
            )

    def claim_read(self, account_id: int, source: str, now: float, interval: float) -> bool:
        """Whether this caller may read ``source`` from AllMySMS for the account now: True for one caller an
        interval, whichever process it runs in (the conditional update decides, not a look-up first)."""
        with self.database.writing() as db:
            db.execute(
                self.database.insert(upstream_reads)
                .on_conflict_do_nothing(index_elements=["account_id", "source"])
                .values(account_id=account_id, source=source, read_at=now - interval - 1)
            )
            taken = db.execute(
                update(upstream_reads)
                .where(
                    and_(upstream_reads.c.account_id == account_id, upstream_reads.c.source == source),
                    # A clock set back must not stop reads for as long as it was set back.
                    or_(upstream_reads.c.read_at <= now - interval, upstream_reads.c.read_at > now + interval),
                )
                .values(read_at=now)
            ).rowcount
        return bool(taken)
