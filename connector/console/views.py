"""The console's pages: overview, accounts, subscriptions, event log, sandbox; forms post back and redirect."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from connector.errors import ConnectorError
from connector.sending import phones
from connector.sending.actions import HANDLERS
from connector.sending.upstream import Credentials
from connector.storage.tables import ACTIVE, DISABLED, FAILED, PENDING, SUCCEEDED
from connector.web import addresses
from connector.web.accounts import inbound_token
from connector.web.actions import checked, inbound_url, perform, simulate_reply

from . import access, charts

log = logging.getLogger(__name__)

#: Events the log shows at most; filters narrow it down.
EVENT_LIMIT = 100
#: How long a login lasts.
SESSION_HOURS = 12
_OPEN = {"console.login", "console.static"}


class PageError(Exception):
    """A refusal shown as a page of the console, not as the API's JSON."""

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


def register(bp: Blueprint, token: str, settings: dict) -> None:
    throttle = access.Throttle()
    sessions = access.Sessions(settings["CONNECTOR_DATA_DIR"], lifetime=SESSION_HOURS * 3600)
    proxies = addresses.trusted_networks(settings["CONNECTOR_TRUSTED_PROXIES"])

    @bp.record_once
    def _sessions(state):
        app = state.app
        app.secret_key = access.session_key(app.extensions["connector"].accounts.secret, token)
        app.session_interface = access.ConsoleSessions()
        app.config.update(
            SESSION_COOKIE_NAME="connector_console",
            SESSION_COOKIE_PATH="/console",
            SESSION_COOKIE_HTTPONLY=True,
            SESSION_COOKIE_SAMESITE="Lax",
            SESSION_COOKIE_SECURE=(settings["CONNECTOR_PUBLIC_URL"] or "").startswith("https://"),
            PERMANENT_SESSION_LIFETIME=timedelta(hours=SESSION_HOURS),
        )

    @bp.before_request
    def _guard():
        if request.endpoint not in _OPEN and not access.logged_in(sessions):
            return redirect(url_for("console.login", next=request.full_path.rstrip("?")), 303)
        if request.method == "POST":
            status = access.csrf_problem(request.form.get("csrf"))
            if status:
                raise PageError(
                    status,
                    "This form has expired or did not come from this console. "
                    "Go back, reload the page and send it again.",
                )
        return None

    @bp.after_request
    def _headers(response):
        # Inline SVG needs no image source; the only style sheet is ours; nothing runs, nothing frames us.
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'self'; img-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.endpoint != "console.static":
            response.headers["Cache-Control"] = "no-store"
        return response

    @bp.errorhandler(PageError)
    def _refused(error: PageError):
        response = current_app.make_response((render_template("console/error.html", error=error), error.status))
        if error.retry_after:
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @bp.context_processor
    def _helpers():
        return {"csrf_token": access.csrf_token, "when": _when, "on_sandbox": current_app.config["ALLMYSMS_SANDBOX"]}

    @bp.route("/login", methods=["GET", "POST"])
    def login():
        target = _local(request.values.get("next"))
        if request.method == "GET":
            if access.logged_in(sessions):
                return redirect(target, 303)
            return render_template("console/login.html", next=target)
        address = addresses.client_address(request.remote_addr, request.headers.get("X-Forwarded-For"), proxies)
        wait = throttle.wait_for(address)
        if wait:
            raise PageError(
                429, f"Too many wrong tokens from this address: wait {wait} s before the next try.", retry_after=wait
            )
        if not access.token_matches(token, request.form.get("token", "")):
            throttle.failed(address)
            log.warning("console: a login with a wrong operator token from %s", address)
            return render_template("console/login.html", next=target, wrong=True), 401
        access.log_in(sessions)
        return redirect(target, 303)

    @bp.post("/logout")
    def logout():
        access.log_out(sessions)
        return redirect(url_for("console.login"), 303)

    @bp.get("")
    def overview():
        store, now = _store(), time.time()
        start = (now // 3600 - 23) * 3600
        per_hour = store.views.events_per_hour(start, 24)
        hours = [time.strftime("%H:00", time.gmtime(start + 3600 * n)) for n in range(24)]
        state = store.views.state(now)
        sent, subs = state["deliveries"]["by_status"], state["subscriptions"]
        delivery_parts = [
            ("succeeded", sent.get(SUCCEEDED, 0), "ok"),
            ("failed", sent.get(FAILED, 0), "bad"),
            ("pending", sent.get(PENDING, 0), "wait"),
        ]
        subscription_parts = [("active", subs.get(ACTIVE, 0), "ok"), ("disabled", subs.get(DISABLED, 0), "bad")]
        return render_template(
            "console/overview.html",
            events_chart=charts.bars(per_hour, hours, "events"),
            events_total=sum(per_hour),
            events_peak=max(per_hour),
            deliveries=delivery_parts,
            deliveries_chart=charts.shares(delivery_parts),
            subscriptions=subscription_parts,
            subscriptions_chart=charts.shares(subscription_parts),
            queue={
                "due": state["deliveries"]["depth"],
                "later": state["deliveries"]["later"],
                "fan_out": state["fanout"]["depth"],
            },
            sandbox_url=current_app.config["ALLMYSMS_BASE_URL"],
        )

    @bp.get("/accounts")
    def accounts():
        secret = current_app.extensions["connector"].accounts.secret
        rows = [
            {**row, "inbound_url": inbound_url(inbound_token(secret, row["login"]))}
            for row in _store().views.accounts()
        ]
        return render_template("console/accounts.html", accounts=rows)

    @bp.get("/subscriptions")
    def subscriptions():
        return render_template("console/subscriptions.html", subscriptions=_store().views.subscriptions())

    @bp.post("/subscriptions/<subscription_id>/disable")
    def disable(subscription_id: str):
        _subscription(subscription_id)
        _store().subscriptions.set_status(subscription_id, DISABLED, "disabled by the operator in the console")
        flash(f"{subscription_id} is disabled: nothing is delivered to it until it is enabled again.")
        return redirect(url_for("console.subscriptions"), 303)

    @bp.post("/subscriptions/<subscription_id>/enable")
    def enable(subscription_id: str):
        _subscription(subscription_id)
        # Back to active with a clean slate: the failure streak that disabled it is over.
        _store().subscriptions.set_status(subscription_id, ACTIVE, None)
        flash(f"{subscription_id} is active again.")
        return redirect(url_for("console.subscriptions"), 303)

    @bp.get("/events")
    def events():
        filters = {name: request.args.get(name, "").strip() for name in ("type", "phone", "campaign", "since", "until")}
        problems, query = _event_query(filters)
        found = [] if problems else _store().views.find_events(limit=EVENT_LIMIT, **query)
        types = sorted({t.event_type for t in current_app.extensions["connector"].manifest.triggers})
        return render_template(
            "console/events.html", events=found, filters=filters, problems=problems, types=types, limit=EVENT_LIMIT
        )

    @bp.get("/events/<event_id>")
    def event(event_id: str):
        return render_template("console/event.html", event=_event(event_id))

    @bp.post("/events/<event_id>/replay")
    def replay(event_id: str):
        found = _event(event_id)
        count = _store().history.replay(found["account_id"], event_id, time.time())
        flash(
            f"Sent again to {count} active subscription{'s' if count != 1 else ''}."
            if count
            else "No active subscription takes this event: nothing to send."
        )
        return redirect(url_for("console.event", event_id=event_id), 303)

    if settings["ALLMYSMS_SANDBOX"]:

        @bp.route("/sandbox", methods=["GET", "POST"])
        def sandbox():
            from ..sandbox import DEMO_ACCOUNTS

            outcome = None
            if request.method == "POST":
                outcome = _try_on_sandbox(request.form, DEMO_ACCOUNTS)
            return render_template(
                "console/sandbox.html", logins=list(DEMO_ACCOUNTS), outcome=outcome, form=request.form
            ), (422 if outcome and outcome.get("error") else 200)


def _try_on_sandbox(form, demo_accounts) -> dict:
    """Send a test SMS or play a reply through the same code as the API's routes; what happened, to show."""
    login = form.get("login", "demo")
    if login not in demo_accounts:
        return {"error": "The sandbox has no such account."}
    services = current_app.extensions["connector"]
    ctx = services.context(Credentials(login, demo_accounts[login]["api_key"]))
    try:
        if form.get("do") == "reply":
            body = {
                k: form.get(k, "").strip() for k in ("phone_number", "message", "sms_id") if form.get(k, "").strip()
            }
            return {"did": "reply", "result": simulate_reply(ctx, body)}
        payload = {
            "message": form.get("message", ""),
            "recipients": [r.strip() for r in form.get("recipients", "").replace("\n", ",").split(",") if r.strip()],
        }
        action = next(a for a in services.manifest.actions if a.key == "send_sms")
        result = perform(
            services.manifest, action, HANDLERS[action.key], ctx, checked(services.manifest, action, payload)
        )
        return {"did": "send", "result": result}
    except ConnectorError as error:
        return {"error": error.message, "fields": [f"{f.path}: {f.message}" for f in error.fields]}


def _event_query(filters: dict) -> tuple[list[str], dict]:
    problems, query, fields = [], {"event_type": filters["type"] or None}, {}
    if filters["phone"]:
        e164, reason = phones.parse(filters["phone"], current_app.extensions["connector"].rules.region)
        if reason:
            problems.append(f"Phone: {reason}.")
        fields["phone_number"] = e164
    if filters["campaign"]:
        fields["campaign_id"] = filters["campaign"]
    for name in ("since", "until"):
        if filters[name]:
            try:
                moment = datetime.fromisoformat(filters[name])
            except ValueError:
                problems.append(f"{name.capitalize()}: not a date and time (write 2026-12-01T09:30).")
                continue
            query[name] = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return problems, {**query, "data_fields": fields}


def _store():
    return current_app.extensions["connector"].store


def _subscription(subscription_id: str) -> dict:
    found = _store().views.subscription(subscription_id)
    if found is None:
        raise PageError(404, "There is no such subscription (it may have been removed by its platform).")
    return found


def _event(event_id: str) -> dict:
    found = _store().views.event(event_id)
    if found is None:
        raise PageError(404, "There is no such event (events are kept for CONNECTOR_EVENT_RETENTION_DAYS).")
    return found


def _local(target: str | None) -> str:
    """Where to go after logging in: a page of the console, never another site; anything else, the overview.
    Control characters are refused before parsing: a CR or LF would end the Location header early."""
    if target and target.isprintable() and target.isascii() and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and (parts.path == "/console" or parts.path.startswith("/console/")):
            return target
    return url_for("console.overview")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))
