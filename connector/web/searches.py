"""The searches' routes, one per search of the manifest: the body checked against the search's input, the search
run against AllMySMS, and the items found answered as a JSON list (empty when nothing is found, never 404)."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from jsonschema import Draft202012Validator

from connector import errors
from connector.description.manifest import Manifest, Search
from connector.observe import metrics
from connector.sending import searches
from connector.web import bodies, current_services, operations
from connector.web.auth import credentials
from connector.web.operations import Operation, View

log = logging.getLogger(__name__)


def blueprint(
    manifest: Manifest, handlers: dict[str, searches.Finder], table: tuple[Operation, ...], routed: set[str]
) -> Blueprint:
    return operations.route(
        Blueprint("searches", __name__),
        table,
        {"search": lambda op: _search_view(manifest, op, handlers[_search(op).key])},
        routed,
    )


def _search(operation: Operation) -> Search:
    if operation.search is None:  # never: the table makes search operations with their search
        raise ValueError(f"operation {operation.key!r} answers no search")
    return operation.search


def _search_view(manifest: Manifest, operation: Operation, find: searches.Finder) -> View:
    search = _search(operation)
    # Compiled at start-up, not on the first request.
    manifest.catalog.validator(search.input)
    item = manifest.catalog.validator(search.output)

    def view() -> ResponseReturnValue:
        started, outcome = time.perf_counter(), "internal_error"
        try:
            ctx = current_services().context(credentials())
            found = find(ctx, bodies.read(operation))
            outcome = "ok"
        except Exception as error:
            outcome = errors.code_of(error)
            raise
        finally:
            metrics.action(search.key, outcome, time.perf_counter() - started)
        log.debug("search %s found %d item(s)", search.key, len(found))
        if current_app.config["CONNECTOR_VALIDATE_OUTPUT"]:
            _check_items(search, item, found)
        return jsonify(found)

    view.__name__ = f"search_{search.key}"
    return view


def _check_items(search: Search, item: Draft202012Validator, found: list[dict[str, Any]]) -> None:
    problems = [f"[{i}] {e.json_path}: {e.message}" for i, one in enumerate(found) for e in item.iter_errors(one)]
    if problems:
        raise RuntimeError(f"{search.key} items do not match {search.output}: {problems[:5]}")
