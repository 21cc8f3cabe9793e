"""The HTTP API 9.0 feed methods (`/http/9.0/<method>/`): one small handler per method, one route.

Replies take the shapes public AllMySMS clients show (tests/contract/ holds them, each naming its
source), so that a connector that works here has a chance on the real API:
- only sendSms, sendMms, sendEmail, simulateCampaign and getInfo carry a `status` when they succeed
  (getInfo's is the text "Active Account"); deleteCampaign answers `{"status": "OK"}`; createList answers
  the status "1" (as text) whether it creates a list (`listData`), fills one (`populateData`, with the
  counts success / ignored / duplicated) or empties one (`deleteData`); getBlacklist, getAcks,
  getAckBySmsId, getPull, getPulls, getLists and getCreditsByCountryIsoCode answer their data alone.
  Errors carry `status` and `statusText` whatever the method.
- getPulls hands each reply out once; getPull (one campaign's replies) answers all of them every time.
- sendMms answers as sendSms does (the one public client shows the same shape); an MMS has receipts too.
- sendEmail's answer is in no public source: the sandbox answers `status` 100 (101 when scheduled),
  `statusText` and `campaignId`, nothing more.
- getCreditsByCountryIsoCode prices countries as phones.SMS_CREDITS_BY_COUNTRY says (France 15), and
  sendSms debits the same figures.
- `invalidNumbers` is one text: "" when none, the refused numbers joined by commas otherwise.
- Numbers are typed as the public examples show them: in sendSms `status` is an integer and
  `credits`, `creditsUsed`, `nbContacts`, `nbSms` are strings; in simulateCampaign the counts are
  integers; getCreditsByCountryIsoCode's `nbCredits` and an ack's `statut` are strings. Clients must
  coerce.
- getAcks names the campaign's client reference once, as `cliMsgId`, beside its `acks`.
Choices where the real API is silent (see also statuses.py for codes 109, 112 and 119):
- sendSms with some invalid numbers answers 113 ("some numbers invalid, others sent"), and still
  carries campaignId and smsIds for the numbers that went out; a scheduled send with invalid
  numbers also answers 113, its statusText saying "scheduled".
- simulateCampaign answers 100 with the figures even when the account could not pay for them,
  and whatever the DATE: a simulation never refuses for credit.
"""

import logging
import re

from flask import Blueprint, Response, current_app, request

from . import statuses
from .campaigns import plan_email, plan_mms, plan_sms
from .feeds import parse_feed
from .inbox import DEFAULT_PULL_LIMIT
from .ledger import SCHEDULED
from .phones import credits_for_country
from .replies import JSON_MIMETYPE, render, to_json, wants_json
from .state import EXTENSION_KEY
from .statuses import STATUS_TEXTS, ApiError

log = logging.getLogger(__name__)
blueprint = Blueprint("sandbox_http_api", __name__)

_LIMIT = re.compile(r"\d{1,9}", re.ASCII)
INVALID_NUMBERS_SEPARATOR = ","


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
    log.info("sandbox %s answered %s", method, payload.get("status", "its data"))
    body, mimetype = render(payload, wants_json(params.get("returnformat")))
    return Response(body, status=200, mimetype=mimetype)


def _plan(state, login, params):
    data = parse_feed(params.get("smsData"))
    plan = plan_sms(data, state.now())
    state.check_feed_accounts(login, data)
    return plan


def send_sms(state, login, params):
    return _sent(state, login, _plan(state, login, params))


def send_mms(state, login, params):
    data = parse_feed(params.get("mmsData"), recipient_tag="MMS")
    plan = plan_mms(data, state.now())
    state.check_feed_accounts(login, data)
    return _sent(state, login, plan)


def send_email(state, login, params):
    plan = plan_email(parse_feed(params.get("emailData"), recipient_tag=None), state.now())
    campaign, _ = state.launch(login, plan)
    status = statuses.SCHEDULED if campaign.status == SCHEDULED else statuses.SENT
    return {"status": status, "statusText": EMAIL_TEXTS[status], "campaignId": campaign.id}


EMAIL_TEXTS = {statuses.SENT: "Your e-mail has been sent", statuses.SCHEDULED: "Your e-mail has been scheduled"}


def _sent(state, login, plan):
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
        "invalidNumbers": INVALID_NUMBERS_SEPARATOR.join(plan.invalid_numbers),
        "campaignId": campaign.id,
        "credits": str(credits_left),
        "creditsUsed": str(plan.credits_needed),
        "nbContacts": str(len(plan.numbers)),
        "nbSms": str(plan.nb_sms),
        "smsIds": [{"phoneNumber": number, "smsId": sms_id(i)} for i, number in enumerate(plan.numbers)],
    }


def simulate_campaign(state, login, params):
    plan = _plan(state, login, params)
    return {
        "status": statuses.SENT,
        "statusText": "Simulation only: nothing was sent and no credit was used",
        "nbCredits": plan.credits_needed,
        "nbContacts": len(plan.numbers),
        "nbSms": plan.nb_sms,
        "invalidNumbers": INVALID_NUMBERS_SEPARATOR.join(plan.invalid_numbers),
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
        # The real API echoes the key back: whoever reads this reply must keep it out of logs and answers.
        "apiKey": params.get("apiKey"),
    }


def delete_campaign(state, login, params):
    state.cancel(login, params.get("campId"))
    return {"status": "OK"}


def get_acks(state, login, params):
    found = state.campaign_acks(login, params.get("campId"))
    if found is None:
        raise ApiError(statuses.NOT_FOUND, "Campaign not found")
    acks, client_reference = found
    return {"acks": acks, "cliMsgId": client_reference}


def get_ack_by_sms_id(state, login, params):
    ack = state.sms_ack(login, params.get("smsId"))
    if ack is None:
        raise ApiError(statuses.NOT_FOUND, "No acknowledgement found for this SMS")
    return ack


def get_pulls(state, login, params):
    raw = params.get("limit")
    if raw is None or raw == "":
        limit = DEFAULT_PULL_LIMIT
    elif _LIMIT.fullmatch(raw.strip()) and int(raw) > 0:
        limit = int(raw)
    else:
        raise statuses.invalid_feed("limit must be a positive whole number")
    replies = state.pull_replies(login, limit)
    return {"mos": replies}


def get_pull(state, login, params):
    replies = state.campaign_replies(login, params.get("campId"))
    if replies is None:
        raise ApiError(statuses.NOT_FOUND, "Campaign not found")
    return {"mos": replies}


def create_list(state, login, params):
    # One method, three feeds: the one public client fills and empties lists through createList too.
    lists = state.contact_lists
    if params.get("populateData") is not None:
        return lists.populate(login, parse_feed(params.get("populateData"), recipient_tag="CONTACTS"))
    if params.get("deleteData") is not None:
        return lists.remove(login, parse_feed(params.get("deleteData"), recipient_tag="CONTACTS"))
    return lists.create(login, parse_feed(params.get("listData"), recipient_tag="STRUCTURE"))


def get_lists(state, login, params):
    return {"lists": state.contact_lists.all(login)}


def get_blacklist(state, login, params):
    entries = state.blacklist(login)
    return {"blacklist": entries}


def get_credits_by_country_iso_code(state, login, params):
    found = credits_for_country(params.get("countryIsoCode"))
    if found is None:
        raise statuses.invalid_feed("countryIsoCode must be a two-letter country code")
    iso_code, credits = found
    return {"isoCode": iso_code, "nbCredits": str(credits)}


METHODS = {
    "sendSms": send_sms,
    "sendMms": send_mms,
    "sendEmail": send_email,
    "simulateCampaign": simulate_campaign,
    "getInfo": get_info,
    "deleteCampaign": delete_campaign,
    "getAcks": get_acks,
    "getAckBySmsId": get_ack_by_sms_id,
    "getPull": get_pull,
    "getPulls": get_pulls,
    "getBlacklist": get_blacklist,
    "createList": create_list,
    "getLists": get_lists,
    "getCreditsByCountryIsoCode": get_credits_by_country_iso_code,
}
