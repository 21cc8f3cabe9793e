"""The console in a real browser: Debian's chromium driven by Playwright, over the whole loop on loopback —
sandbox, connector, delivery worker, subscriber.

UPDATE_SCREENSHOTS=1 rewrites the README's overview picture (tests/screenshots/console-overview.png)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector import create_app
from tests.conftest import Api, connector_settings, require, wait_for

CHROMIUM = Path("/usr/bin/chromium")
OVERVIEW_PICTURE = Path(__file__).parent / "screenshots" / "console-overview.png"
LAPTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}
FAST = {
    "CONNECTOR_ALLOWED_TARGETS": "127.0.0.1",
    "CONNECTOR_RETRY_SCHEDULE": "0,0.2,0.2,0.2",
    "CONNECTOR_LEASE_SECONDS": 2,
}

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import Page, sync_playwright
except ImportError:
    require("the browser test needs the playwright package (pip install -e '.[test]')", module=True)
if not CHROMIUM.exists():
    require(
        f"the browser test drives Debian's chromium, and {CHROMIUM} is missing (apt-get install chromium; "
        ".ci/run does it)",
        module=True,
    )


@pytest.fixture
def chromium():
    with sync_playwright() as playwright:
        # Debian's build, never one Playwright would download.
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()


@pytest.fixture
def loop(sandbox, serve, subscriber):
    """The connector on the sandbox as `connector serve` runs it (no operator token set: one is made), a
    delivery worker, and a subscriber to delivery receipts and replies."""
    app = create_app(connector_settings(sandbox.url, ALLMYSMS_SANDBOX=True, **FAST))
    worker = app.extensions["connector"].delivery_worker()
    worker.poll_interval = 0.01
    worker.start()
    api: Api = serve(app)
    sandbox.state.set_callback_url("demo", api.get("/v1/me").json()["inbound_url"])
    for trigger in ("delivery_receipt", "reply_received"):
        answer = api.session.post(
            f"{api.url}/v1/triggers/{trigger}/subscriptions", timeout=10, json={"target_url": subscriber.target()}
        )
        assert answer.status_code == 201, answer.text
    yield api
    worker.stop()


def shown(page: Page, text: str, what: str, timeout: float = 20.0) -> None:
    """Reload ``page`` until ``text`` is on it: the console has no script to refresh itself."""

    def there():
        page.reload()
        return text in page.content()

    if text not in page.content():
        wait_for(there, timeout=timeout, what=what)


def snapshot(page: Page, path: Path, full_page: bool = False) -> None:
    """A picture of the page for whoever reads a failure, not something the test asserts: chromium on a loaded
    machine sometimes cannot capture one ("Unable to capture screenshot"), which is tried again, then let go."""
    for attempt in range(2):
        try:
            page.screenshot(path=path, full_page=full_page)
            return
        except PlaywrightError:
            if attempt:
                print(f"no screenshot {path.name}: chromium could not capture it")


def fits_the_width(page: Page) -> bool:
    # Against the screen, not the window: a phone's browser widens its layout to fit what overflows.
    return page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


def test_an_operator_sends_a_test_sms_watches_its_receipt_delivered_and_replays_it(
    chromium, loop, subscriber, tmp_path
):
    token = (tmp_path / "var" / "operator-token").read_text().strip()
    shots = tmp_path / "screenshots"
    page = chromium.new_page(viewport=LAPTOP)

    page.goto(f"{loop.url}/console")
    assert "/console/login" in page.url
    page.get_by_label("Operator token").fill("not the token")
    page.get_by_role("button", name="Log in").click()
    assert "That is not the operator token." in page.content()
    page.get_by_label("Operator token").fill(token)
    page.get_by_role("button", name="Log in").click()
    assert page.url == f"{loop.url}/console"
    snapshot(page, shots / "1-overview-empty.png")

    page.get_by_role("link", name="Sandbox").click()
    send = page.locator("form", has=page.get_by_role("button", name="Send"))
    send.get_by_label("Recipients").fill("06 11 11 11 11")
    send.get_by_label("Message").fill("Your table is ready")
    send.get_by_role("button", name="Send").click()
    assert "Sent: campaign" in page.content()
    snapshot(page, shots / "2-sandbox-sent.png")

    page.get_by_role("link", name="See its events").click()
    shown(page, "1 succeeded", what="the receipt in the event log, delivered")
    assert "sms.delivery_receipt" in page.content() and "+33611111111" in page.content()
    snapshot(page, shots / "3-event-log.png")
    first = wait_for(subscriber.deliveries, what="the receipt at the subscriber")[0]

    page.locator("table.events tbody a").first.click()
    assert first["headers"]["Webhook-Id"] in page.content() and ">succeeded</span>" in page.content()
    page.get_by_role("button", name="Replay").click()
    assert "Sent again to 1 active subscription." in page.content()
    again = wait_for(lambda: subscriber.deliveries()[1:], what="the replayed delivery")[0]
    assert again["headers"]["Webhook-Id"] == first["headers"]["Webhook-Id"]
    shown(page, ">200</span>", what="the replay's attempt on the event page")
    wait_for(
        lambda: (page.reload(), page.locator("table.attempts tbody tr").count() == 2)[1], what="both attempts listed"
    )
    snapshot(page, shots / "4-event-replayed.png", full_page=True)

    page.get_by_role("link", name="Sandbox").click()
    reply = page.locator("form", has=page.get_by_role("button", name="Play the reply"))
    reply.get_by_label("From the number").fill("0611111111")
    reply.get_by_label("Message").fill("On arrive")
    reply.get_by_role("button", name="Play the reply").click()
    page.get_by_role("link", name="See replies").click()
    shown(page, "sms.reply_received", what="the reply in the event log")

    page.get_by_role("link", name="Overview").click()
    shown(page, "<b>2</b> succeeded", what="the reply delivered too")
    snapshot(page, shots / "5-overview.png")
    if os.environ.get("UPDATE_SCREENSHOTS") or not OVERVIEW_PICTURE.exists():
        OVERVIEW_PICTURE.parent.mkdir(exist_ok=True)
        page.screenshot(path=OVERVIEW_PICTURE)
    assert fits_the_width(page)

    phone = chromium.new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    phone.context.add_cookies(page.context.cookies())
    for path in ("/console", "/console/events", "/console/subscriptions", "/console/sandbox"):
        phone.goto(loop.url + path)
        assert phone.url == loop.url + path and fits_the_width(phone), f"{path} is wider than a phone"
        snapshot(phone, shots / f"phone{path.replace('/', '-')}.png", full_page=True)
    page.get_by_role("button", name="Log out").click()
    assert "/console/login" in page.url
