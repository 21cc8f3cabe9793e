"""The REST voice endpoint (`POST /voice/send/bulk`): HTTP Basic auth, JSON in, JSON out.

Unlike the feed methods, REST errors use HTTP statuses (400, 401, 402) with the AllMySMS code in
`code`. A send with some invalid numbers still answers 201 with code 100/101 and lists them in
`invalidNumbers`, one text joined by commas as in the feed replies: the REST API is only known to
answer 100 or 101 on success. `cost` and `balance` are money (euros, two decimals), as the REST API
answers them; the sandbox's accounts hold credits, priced at CREDIT_PRICE_EUR each.
"""

import json
import logging

from flask import Blueprint, Response, current_app, request

from . import statuses
from .http_api import INVALID_NUMBERS_SEPARATOR
from .ledger import SCHEDULED
from .replies import JSON_MIMETYPE, to_json
from .state import EXTENSION_KEY
from .statuses import ApiError
from .voice import plan_voice

log = logging.getLogger(__name__)
blueprint = Blueprint("sandbox_rest_api", __name__)

HTTP_STATUS_BY_CODE = {
    statuses.BAD_CREDENTIALS: 401,
    statuses.NO_CREDIT: 402,
    statuses.NOT_ENOUGH_CREDIT: 402,
}
DEFAULT_ERROR_HTTP_STATUS = 400
# 30 credits, one voice message, cost 0.19 euros.
CREDIT_PRICE_EUR = 0.0063


def euros(credits):
    return round(credits * CREDIT_PRICE_EUR, 2)


@blueprint.post("/voice/send/bulk")
def send_voice_bulk():
    state = current_app.extensions[EXTENSION_KEY]
    auth = request.authorization
    login = auth.username if auth is not None and auth.type == "basic" else None
    try:
        if login is None or auth is None or not state.authenticate(login, auth.password):
            raise ApiError(statuses.BAD_CREDENTIALS)
        plan, simulate = plan_voice(_json_body(), state.now())
        if simulate:
            status, payload = 200, _simulation(plan, state.credits(login))
        else:
            campaign, balance = state.launch(login, plan)
            status, payload = 201, _sent(plan, campaign, balance)
    except ApiError as error:
        status = HTTP_STATUS_BY_CODE.get(error.status, DEFAULT_ERROR_HTTP_STATUS)
        payload = {"code": error.status, "description": error.text}
    log.info("sandbox voice send answered HTTP %s code %s", status, payload["code"])
    response = Response(to_json(payload), status=status, mimetype=JSON_MIMETYPE)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="AllMySMS sandbox"'
    return response


def _json_body():
    try:
        return json.loads(request.get_data(cache=False))
    # Undecodable bytes, bad JSON and absurd nesting all mean "not a JSON object" to the client.
    except (ValueError, RecursionError):
        return None


def _simulation(plan, balance):
    return {
        "code": statuses.SENT,
        "description": "Simulation only: nothing was sent and no credit was used",
        "cost": euros(plan.credits_needed),
        "balance": euros(balance),
        "nbContacts": len(plan.numbers),
        "invalidNumbers": INVALID_NUMBERS_SEPARATOR.join(plan.invalid_numbers),
    }


def _sent(plan, campaign, balance):
    scheduled = campaign.status == SCHEDULED
    return {
        "code": statuses.SCHEDULED if scheduled else statuses.SENT,
        "description": f"Your voice messages have been {'scheduled' if scheduled else 'sent'}",
        "campaignId": campaign.id,
        "smsIds": [{"phoneNumber": number, "smsId": campaign.sms_id(i)} for i, number in enumerate(plan.numbers)],
        "nbContacts": len(plan.numbers),
        "cost": euros(plan.credits_needed),
        "balance": euros(balance),
        "invalidNumbers": INVALID_NUMBERS_SEPARATOR.join(plan.invalid_numbers),
    }
