"""The HTTP surface platforms call: routes derived from the manifest, authentication, request bodies."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import current_app

if TYPE_CHECKING:  # services builds on web's modules
    from connector.services import Services


def current_services() -> Services:
    """The services of the app handling the request: create_app keeps them in its extensions."""
    return cast("Services", current_app.extensions["connector"])
