"""The routes that fill dropdowns: one per kind of choice the manifest's fields take from the account
(``x-options``), answering the account's choices as a JSON list of ``{value, label}``."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue

from connector.errors import ConfigError
from connector.sending.options import Lister
from connector.web import current_services, operations
from connector.web.auth import credentials
from connector.web.operations import Operation, View

log = logging.getLogger(__name__)


def blueprint(listers: dict[str, Lister], table: tuple[Operation, ...], routed: set[str]) -> Blueprint:
    unknown = sorted({op.options for op in table if op.options and op.options not in listers})
    if unknown:
        raise ConfigError(
            "The schemas and the code disagree",
            [f"{operations.OPTIONS_KEYWORD}: {name!r} names no kind of choice the service answers" for name in unknown],
        )
    return operations.route(
        Blueprint("options", __name__), table, {"options": lambda op: _options_view(op, listers)}, routed
    )


def _options_view(operation: Operation, listers: dict[str, Lister]) -> View:
    name = operation.options or ""
    listed = listers[name]

    def view() -> ResponseReturnValue:
        found = listed(current_services().context(credentials()))
        log.debug("options %s: %d choice(s)", name, len(found))
        return jsonify(found)

    view.__name__ = f"options_{name}"
    return view
