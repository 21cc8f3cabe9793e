"""Liveness and readiness, for load balancers and orchestrators: no credentials, nothing secret."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from connector.errors import ConfigError, NotReady
from connector.observe import processes
from connector.storage import schema
from connector.web import current_services, operations
from connector.web.operations import Operation


def blueprint(table: tuple[Operation, ...], routed: set[str]) -> Blueprint:
    def healthz() -> ResponseReturnValue:
        """The process answers: restart it if not."""
        return jsonify({"status": "ok"})

    def readyz() -> ResponseReturnValue:
        """The process can do its work: the database answers and its schema is one this version runs on.
        What the local journal holds is shown either way: callbacks kept while the database was away."""
        if processes.draining():
            raise NotReady(
                "This process is stopping: it answers the requests it holds and takes no new ones.", retry_after=1
            )
        services = current_services()
        waiting = services.journal.depth()
        try:
            schema.check(services.store.engine)
        except SQLAlchemyError as exc:
            # The outage itself is logged once by the store (outage.py), not at every probe.
            services.store.outage.failed(exc)
            why = services.store.outage.why or type(exc).__name__
            raise NotReady(
                f"The database does not answer ({why}). Callbacks are kept in the local journal meanwhile.",
                extra={"journal": waiting},
                retry_after=5,
            ) from None
        except ConfigError as exc:
            raise NotReady(f"{exc.what}: {'; '.join(exc.problems)}.", extra={"journal": waiting}) from None
        if services.store.outage.down:
            # It answered this probe's read, but writes were failing (a full disk lets reads through, and small
            # writes that still fit): one write now, and ready only once the outage is over, which takes a
            # moment without failures (outage.QUIET), so that a flapping database is not called ready.
            try:
                services.store.probe_write()
            except SQLAlchemyError as exc:
                services.store.outage.failed(exc, wrote=True)
            if services.store.outage.down:
                raise NotReady(
                    f"The database is failing ({services.store.outage.why}). Callbacks are kept in "
                    "the local journal meanwhile.",
                    extra={"journal": waiting},
                    retry_after=5,
                )
        return jsonify({"status": "ok", "schema": schema.head(), "journal": waiting})

    return operations.route(
        Blueprint("health", __name__), table, {"healthz": lambda _: healthz, "readyz": lambda _: readyz}, routed
    )
