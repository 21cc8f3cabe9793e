"""The built-in AllMySMS sandbox: a local stand-in for the HTTP API 9.0 and the REST voice API.

It needs no account and no network. `create_sandbox_app()` builds a Flask app on a
`SandboxState`; the demo logins are in `DEMO_ACCOUNTS` (demo, broke, low), and
`make_sandbox_server()` serves an app without logging query strings. Like AllMySMS, it pushes
delivery receipts and replies to each account's callback URL, set through
`/sandbox/accounts/<login>/callback` (see controls.py).
"""

from .accounts import DEMO_ACCOUNTS
from .app import create_sandbox_app
from .ledger import Campaign, Recipient
from .server import make_sandbox_server
from .state import SandboxState

__all__ = [
    "DEMO_ACCOUNTS",
    "Campaign",
    "Recipient",
    "SandboxState",
    "create_sandbox_app",
    "make_sandbox_server",
]
