"""The operator console: pages at /console, behind an operator token, to see and steer what the service does."""

from __future__ import annotations

from flask import Blueprint

from . import access, views


def blueprint(settings: dict) -> Blueprint:
    token = access.operator_token(settings)
    if token is None:
        # Not a single route: without a token the console is indistinguishable from an unknown address.
        return Blueprint("console", __name__)
    # Named in connector.OPERATOR_BLUEPRINTS: pages for people, left out of the API description.
    bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates", static_folder="static")
    views.register(bp, token, settings)
    return bp
