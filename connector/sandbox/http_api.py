"""The HTTP API 9.0 feed methods (`/http/9.0/<method>/`): one small handler per method, one route.

Like the real API, API-level errors answer HTTP 200 with the code in `status`. Choices where
the real API is silent (see also statuses.py for code 119):
- sendSms with some invalid numbers answers 113 ("some numbers invalid, others sent"), and still
  carries campaignId and smsIds for the numbers that went out; a scheduled send with invalid
  numbers also answers 113, its statusText saying "scheduled".
- simulateCampaign answers 100 with the figures even when the account could not pay for them,
  and whatever the DATE: a simulation never refuses for credit.
- Counts (`credits`, `nbContacts`, `nbSms`, `nbCredits`) are strings in replies while `status`
  and `creditsUsed` are integers: the real API mixes both, and clients must coerce.
- getAckBySmsId nests its receipt under `ack`, so its `statut` cannot be mistaken for the reply's
  `status`.
"""

import logging
import re

from flask import Blueprint, Response, current_app, request

from . import statuses
from .campaigns import plan_sms
from .feeds import parse_feed
from .phones import credits_for_country
from .replies import JSON_MIMETYPE, render, to_json, wants_json
from .state import DEFAULT_PULL_LIMIT, EXTENSION_KEY, SCHEDULED
from .statuses import STATUS_TEXTS, ApiError

log = logging.getLogger(__name__)
blueprint = Blueprint("sandbox_http_api", __name__)

_LIMIT = re.compile(r"\d{1,9}", re.ASCII)


@blueprint.route("/http/9.0/<method>/", methods=["GET", "POST"], strict_slashes=False)
def feed_method(method):
    handler = METHODS.get(method)
    if handler is None:
        body = to_json({"status": 404, "statusText": "Unknown method"})
        return Response(body, status=404, mimetype=JSON_MIMETYPE)
    params = request.values
    state = current_app.extensions[EXTENSION_KEY]
    login = params.get("login")
    try:
        if not state.authenticate(login, params.get("apiKey")):
            raise ApiError(statuses.BAD_CREDENTIALS)
        payload = handler(state, login, params)
    except ApiError as error:
        payload = {"status": error.status, "statusText": error.text}
    # Only the method and the outcome: parameters hold keys, numbers and message texts.
    log.info("sandbox %s answered %s", method, payload["status"])
    body, mimetype = render(payload, wants_json(params.get("returnformat")))
    return Response(body, status=200, mimetype=mimetype)


def send_sms(state, login, params):
    plan = plan_sms(parse_feed(params.get("smsData")), state.now())
    campaign, credits_left = state.launch(login, plan)
    outcome = "scheduled" if campaign.status == SCHEDULED else "sent"
    if plan.invalid_numbers:
        status = statuses.SOME_NUMBERS_INVALID
        text = STATUS_TEXTS[status].format(outcome=outcome)
    else:
        status = statuses.SCHEDULED if outcome == "scheduled" else statuses.SENT
        text = STATUS_TEXTS[status]
    sms_id = campaign.sms_id
    return {
        "status": status,
        "statusText": text,
        "invalidNumbers": list(plan.invalid_numbers),
        "campaignId": campaign.id,
        "credits": str(credits_left),
        "creditsUsed": plan.credits_needed,
        "nbContacts": str(len(plan.numbers)),
        "nbSms": str(plan.nb_sms),
        "smsIds": [
            {"phoneNumber": number, "smsId": sms_id(i)} for i, number in enumerate(plan.numbers)
        ],
    }


def simulate_campaign(state, login, params):
    plan = plan_sms(parse_feed(params.get("smsData")), state.now())
    return {
        "status": statuses.SENT,
        "statusText": "Simulation only: nothing was sent and no credit was used",
        "nbCredits": str(plan.credits_needed),
        "nbContacts": str(len(plan.numbers)),
        "nbSms": str(plan.nb_sms),
        "invalidNumbers": list(plan.invalid_numbers),
    }


def get_info(state, login, params):
    account = state.account_info(login)
    return {
        # The real API answers this text, not a numeric code, for a working account.
        "status": "Active Account",
        "credits": str(account["credits"]),
        "firstName": account["first_name"],
        "lastName": account["last_name"],
        "society": account["society"],
        "email": account["email"],
        "login": account["login"],
    }


def delete_campaign(state, login, params):
    state.cancel(login, params.get("campId"))
    return {"status": statuses.SENT, "statusText": "Campaign deleted"}


def get_acks(state, login, params):
    acks = state.campaign_acks(login, params.get("campId"))
    if acks is None:
        raise ApiError(statuses.NOT_FOUND, "Campaign not found")
    return {"status": statuses.SENT, "statusText": f"{len(acks)} acknowledgements", "acks": acks}


def get_ack_by_sms_id(state, login, params):
    ack = state.sms_ack(login, params.get("smsId"))
    if ack is None:
        raise ApiError(statuses.NOT_FOUND, "No acknowledgement found for this SMS")
    return {"status": statuses.SENT, "statusText": "Acknowledgement found", "ack": ack}


def get_pulls(state, login, params):
    raw = params.get("limit")
    if raw is None or raw == "":
        limit = DEFAULT_PULL_LIMIT
    elif _LIMIT.fullmatch(raw.strip()) and int(raw) > 0:
        limit = int(raw)
    else:
        raise statuses.invalid_feed("limit must be a positive whole number")
    replies = state.pull_replies(login, limit)
    return {"status": statuses.SENT, "statusText": f"{len(replies)} replies", "mos": replies}


def get_blacklist(state, login, params):
    entries = state.blacklist(login)
    return {"status": statuses.SENT, "statusText": f"{len(entries)} entries", "blacklist": entries}


def get_credits_by_country_iso_code(state, login, params):
    found = credits_for_country(params.get("countryIsoCode"))
    if found is None:
        raise statuses.invalid_feed("countryIsoCode must be a two-letter country code")
    iso_code, credits = found
    return {"status": statuses.SENT, "statusText": "OK", "isoCode": iso_code, "nbCredits": credits}


METHODS = {
    "sendSms": send_sms,
    "simulateCampaign": simulate_campaign,
    "getInfo": get_info,
    "deleteCampaign": delete_campaign,
    "getAcks": get_acks,
    "getAckBySmsId": get_ack_by_sms_id,
    "getPulls": get_pulls,
    "getBlacklist": get_blacklist,
    "getCreditsByCountryIsoCode": get_credits_by_country_iso_code,
}
