"""The contact lists of each sandbox account: created, filled and emptied through createList, listed by getLists.

The one public client creates a list with a `listData` feed ({DATA: {LISTNAME, LOCKED, STRUCTURE}}) and fills
or empties it with `populateData` or `deleteData` ({DATA: {LISTNAME, CONTACTS: [{MOBILEPHONE, ...}]}}), all three
posted to createList; the sandbox reads them the same way. Its own choices where nothing is documented: list
names are unique per account (creating one twice answers 106), filling or emptying a list that does not exist
answers 119, a contact without a valid MOBILEPHONE is `ignored`, and a number already in the list (or twice in
the feed) is `duplicated`; when emptying, a number not in the list is `ignored`.
"""

from dataclasses import dataclass, field
from typing import Any

from . import phones, statuses
from .campaigns import PARIS, as_text
from .statuses import ApiError, invalid_feed

LIST_NOT_FOUND = "List not found"


@dataclass
class ContactList:
    name: str
    locked: bool
    created_on: str
    fields: tuple
    # normalised number -> the contact's other fields, in the order they were added
    contacts: dict = field(default_factory=dict, repr=False)


class ContactLists:
    """The lists of every account of `accounts`, under the state's (re-entrant) `lock`; `clock` dates them."""

    def __init__(self, accounts, lock, clock):
        self._accounts = accounts
        self._lock = lock
        self._clock = clock
        self._by_login: dict[str, dict[str, Any]] = {login: {} for login in accounts.logins}

    def create(self, login, data):
        """A new empty list from a parsed listData feed."""
        name = _list_name(data)
        structure = data.get("STRUCTURE") or []
        if not isinstance(structure, list) or not all(isinstance(f, dict) and f.get("FIELDNAME") for f in structure):
            raise invalid_feed("STRUCTURE must be a list of fields, each with a FIELDNAME")
        with self._lock:
            self._accounts.get(login)
            lists = self._by_login[login]
            if name in lists:
                raise invalid_feed("a list with this LISTNAME already exists")
            created_on = self._clock().astimezone(PARIS).strftime("%Y-%m-%d")
            fields = tuple(as_text(f["FIELDNAME"]) for f in structure)
            lists[name] = ContactList(name, as_text(data.get("LOCKED")) == "1", created_on, fields)
        return {"status": "1", "statusText": "database successfully populated"}

    def populate(self, login, data):
        """Add the contacts of a parsed populateData feed to its list."""
        name = _list_name(data)
        succeeded = ignored = duplicated = 0
        with self._lock:
            target = self._owned(login, name)
            for contact in _contacts(data):
                number = _number(contact)
                if number is None:
                    ignored += 1
                elif number in target.contacts:
                    duplicated += 1
                else:
                    target.contacts[number] = {k: as_text(v) for k, v in contact.items() if k != "MOBILEPHONE"}
                    succeeded += 1
        return _change(f"list {name} successfully populated", succeeded, ignored, duplicated)

    def remove(self, login, data):
        """Take the contacts of a parsed deleteData feed out of its list."""
        name = _list_name(data)
        succeeded = ignored = 0
        with self._lock:
            target = self._owned(login, name)
            for contact in _contacts(data):
                number = _number(contact)
                if number is not None and target.contacts.pop(number, None) is not None:
                    succeeded += 1
                else:
                    ignored += 1
        return _change(f"contacts deleted from list {name}", succeeded, ignored, 0)

    def all(self, login):
        """The account's lists as getLists answers them, oldest first."""
        with self._lock:
            self._accounts.get(login)
            return [
                {
                    "listName": found.name,
                    "contacts": str(len(found.contacts)),
                    "locked": "1" if found.locked else "0",
                    "creationDate": found.created_on,
                }
                for found in self._by_login[login].values()
            ]

    def numbers(self, login, name):
        """The numbers of one list, in the order they were added; KeyError when there is no such list."""
        with self._lock:
            self._accounts.get(login)
            found = self._by_login[login].get(name)
            if found is None:
                raise KeyError("unknown list")
            return tuple(found.contacts)

    def _owned(self, login, name):
        self._accounts.get(login)
        found = self._by_login[login].get(name)
        if found is None:
            raise ApiError(statuses.NOT_FOUND, LIST_NOT_FOUND)
        return found


def _list_name(data):
    name = as_text(data.get("LISTNAME")).strip()
    if not name:
        raise invalid_feed("LISTNAME is missing")
    return name


def _contacts(data):
    contacts = data.get("CONTACTS")
    if not isinstance(contacts, list) or not contacts:
        raise invalid_feed("CONTACTS must be a list of contacts, each with a MOBILEPHONE")
    # An entry that is not an object has no number: it counts as ignored.
    return [c if isinstance(c, dict) else {} for c in contacts]


def _number(contact):
    raw = contact.get("MOBILEPHONE")
    return phones.normalise_number(str(raw) if type(raw) is int else raw)


def _change(text, succeeded, ignored, duplicated):
    # As the public example writes it: the status as text, the counts as numbers.
    return {"status": "1", "statusText": text, "success": succeeded, "ignored": ignored, "duplicated": duplicated}
