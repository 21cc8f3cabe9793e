"""What fills the dropdown of a field whose values come from the account (``x-options`` in its schema): for each
kind of value, the account's choices as ``{value, label}``, read from AllMySMS through the upstream client."""

from __future__ import annotations

from collections.abc import Callable

from connector.sending import feeds
from connector.sending.actions import Context

#: What answers one kind of choice: the account's, in AllMySMS's order.
Lister = Callable[[Context], list[dict[str, str]]]
OPTIONS: dict[str, Lister] = {}


def options(name: str) -> Callable[[Lister], Lister]:
    def register(func: Lister) -> Lister:
        OPTIONS[name] = func
        return func

    return register


@options("contact_lists")
def contact_lists(ctx: Context) -> list[dict[str, str]]:
    found = feeds.contact_lists(ctx.upstream.lists(ctx.credentials))
    # A list's name is what the actions take; a list without a name cannot be chosen.
    return [{"value": one["name"], "label": _counted(one["name"], one["contacts"])} for one in found if one["name"]]


def _counted(name: str, contacts: int) -> str:
    return f"{name} ({contacts} contact{'' if contacts == 1 else 's'})"
