"""Liveness and readiness, for load balancers and orchestrators: no credentials, nothing secret."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from . import schema
from .errors import ConfigError, NotReady

log = logging.getLogger(__name__)


def blueprint() -> Blueprint:
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    def healthz():
        """The process answers: restart it if not."""
        return jsonify({"status": "ok"})

    @bp.get("/readyz")
    def readyz():
        """The process can do its work: the database answers and its schema is this version's."""
        engine = current_app.extensions["connector"].store.engine
        try:
            schema.check(engine)
        except SQLAlchemyError as exc:
            log.warning("not ready: the database did not answer (%s)", type(exc).__name__)
            raise NotReady("The database does not answer.", log_detail=type(exc).__name__) from None
        except ConfigError as exc:
            raise NotReady(f"{exc.what}: {'; '.join(exc.problems)}.") from None
        return jsonify({"status": "ok", "schema": schema.head()})

    return bp
