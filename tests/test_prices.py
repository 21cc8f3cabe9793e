"""An estimate's cost by destination country, priced by AllMySMS and kept for a day per account and country."""

from __future__ import annotations

import pytest

from connector import create_app
from connector.errors import ConnectorError
from connector.sandbox import http_api
from connector.sending import phones
from connector.sending.prices import NO_COUNTRY, UNPRICED, UNREAD, Prices
from connector.sending.upstream import Credentials
from tests.conftest import Api, Scripted, connector_settings

FRANCE, US, CANADA, REUNION, GERMANY = "0611111111", "+12025550123", "+14165550123", "+262692123456", "+4915112345678"


@pytest.fixture
def asked(monkeypatch):
    """Every getCreditsByCountryIsoCode the sandbox answers, as (login, country)."""
    calls: list[tuple[str, str]] = []
    answer = http_api.METHODS["getCreditsByCountryIsoCode"]

    def counted(state, login, params):
        calls.append((login, params.get("countryIsoCode")))
        return answer(state, login, params)

    monkeypatch.setitem(http_api.METHODS, "getCreditsByCountryIsoCode", counted)
    return calls


def _rows(response) -> dict:
    assert response.status_code == 200, response.text
    return {row["country"]: row for row in response.json()["by_country"]}


def test_an_estimate_prices_each_country_as_the_sandbox_does(api, asked):
    body = {"message": "x" * 200, "recipients": [FRANCE, "0622222222", US, CANADA, REUNION, GERMANY]}
    response = api.action("estimate_sms", body)
    rows = _rows(response)
    assert list(rows) == ["FR", "US", "CA", "RE", "DE"]
    assert rows["FR"] == {
        "country": "FR",
        "recipients": 2,
        "sms_parts": 4,
        "credits_per_sms": 15,
        "credits": 60,
        "note": None,
    }
    assert [(rows[c]["credits_per_sms"], rows[c]["credits"]) for c in ("US", "CA", "RE", "DE")] == [
        (10, 20),
        (10, 20),
        (25, 50),
        (20, 40),
    ]
    # The sandbox debits what it prices: the countries add up to its own total.
    assert sum(row["credits"] for row in rows.values()) == response.json()["credits"] == 190


def test_each_country_is_asked_once_per_account_however_many_estimates(api, asked):
    for _ in range(3):
        _rows(api.action("estimate_sms", {"message": "Hi", "recipients": [FRANCE, "0622222222", US]}))
    assert sorted(asked) == [("demo", "FR"), ("demo", "US")]
    other = Api(api.url, auth=("low", "low-api-key"))
    _rows(other.action("estimate_sms", {"message": "Hi", "recipients": [FRANCE]}))
    assert sorted(asked) == [("demo", "FR"), ("demo", "US"), ("low", "FR")]


def test_personalised_texts_count_each_recipients_own_parts(api):
    body = {
        "message": "Hello #param_1#",
        "recipients": [
            {"phone_number": FRANCE, "params": ["Alice"]},
            {"phone_number": US, "params": ["B" * 200]},
        ],
    }
    rows = _rows(api.action("estimate_sms", body))
    assert (rows["FR"]["sms_parts"], rows["FR"]["credits"]) == (1, 15)
    assert (rows["US"]["sms_parts"], rows["US"]["credits"]) == (2, 20)


def test_numbers_of_no_country_come_last_without_a_price(api, asked):
    rows = _rows(api.action("estimate_sms", {"message": "Hi", "recipients": ["+80012345678", FRANCE]}))
    assert list(rows) == ["FR", None]
    assert rows[None] == {
        "country": None,
        "recipients": 1,
        "sms_parts": 1,
        "credits_per_sms": None,
        "credits": None,
        "note": NO_COUNTRY,
    }
    assert asked == [("demo", "FR")]


_SIMULATED = Scripted(body={"status": 100, "nbContacts": 1, "nbSms": 1, "nbCredits": 15})


def test_a_country_allmysms_does_not_price_says_so_and_keeps_the_total(scripted, through):
    scripted.script(_SIMULATED, Scripted(body={"isoCode": "FR"}))
    response = through().action("estimate_sms", {"message": "Hi", "recipients": [FRANCE]})
    row = _rows(response)["FR"]
    assert (row["credits_per_sms"], row["credits"], row["note"]) == (None, None, UNPRICED)
    assert response.json()["credits"] == 15
    assert scripted.requests[-1]["form"]["countryIsoCode"] == "FR"


def test_a_price_allmysms_failed_to_give_is_asked_again_next_time(scripted, through):
    api = through()
    scripted.script(_SIMULATED, Scripted(status=503, body="down"))
    row = _rows(api.action("estimate_sms", {"message": "Hi", "recipients": [FRANCE]}))["FR"]
    assert (row["credits_per_sms"], row["note"]) == (None, UNREAD)
    scripted.script(_SIMULATED, Scripted(body={"isoCode": "FR", "nbCredits": "15"}))
    row = _rows(api.action("estimate_sms", {"message": "Hi", "recipients": [FRANCE]}))["FR"]
    assert (row["credits_per_sms"], row["credits"], row["note"]) == (15, 15, None)


class _Upstream:
    """Answers every price with 15 and counts the questions."""

    def __init__(self, failing: bool = False):
        self.calls: list[tuple[str, str]] = []
        self.failing = failing

    def credits_by_country(self, credentials: Credentials, iso_code: str) -> dict:
        self.calls.append((credentials.login, iso_code))
        if self.failing:
            raise ConnectorError("AllMySMS is unavailable")
        return {"isoCode": iso_code, "nbCredits": "15"}


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


DEMO_KEYS = Credentials("demo", "key")


def test_a_price_is_kept_for_a_day_then_asked_again():
    upstream, clock = _Upstream(), _Clock()
    prices = Prices(clock=clock)
    assert prices.of(upstream, DEMO_KEYS, "FR").credits_per_sms == 15
    clock.now += 86399
    prices.of(upstream, DEMO_KEYS, "FR")
    assert len(upstream.calls) == 1
    clock.now += 1
    prices.of(upstream, DEMO_KEYS, "FR")
    assert len(upstream.calls) == 2


def test_the_price_cache_forgets_the_least_recently_used_past_its_size():
    upstream = _Upstream()
    prices = Prices(size=2)
    for country in ("FR", "US", "FR", "DE"):
        prices.of(upstream, DEMO_KEYS, country)
    assert len(prices) == 2
    prices.of(upstream, DEMO_KEYS, "FR")
    prices.of(upstream, DEMO_KEYS, "US")
    assert upstream.calls == [("demo", "FR"), ("demo", "US"), ("demo", "DE"), ("demo", "US")]


def test_a_failed_price_is_not_kept():
    upstream = _Upstream(failing=True)
    prices = Prices()
    assert prices.of(upstream, DEMO_KEYS, "FR").note == UNREAD
    prices.of(upstream, DEMO_KEYS, "FR")
    assert len(upstream.calls) == 2 and len(prices) == 0


@pytest.mark.parametrize(
    ("e164", "country"),
    [("+33611111111", "FR"), (US, "US"), (CANADA, "CA"), (REUNION, "RE"), ("+262269601234", "YT"), (GERMANY, "DE")],
)
def test_a_numbers_country_is_its_phonenumbers_region(e164, country):
    assert phones.region(e164) == country


def test_a_number_of_no_country_has_no_region():
    assert phones.region("+80012345678") is None


def test_one_process_shares_its_prices_between_requests(sandbox):
    app = create_app(connector_settings(sandbox.url))
    services = app.extensions["connector"]
    assert services.context(DEMO_KEYS).prices is services.context(Credentials("low", "k")).prices
