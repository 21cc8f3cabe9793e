"""Tests for connector.events.signing: Standard Webhooks signatures made, checked against the reference package."""

import base64
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from connector.events import signing
from connector.events.signing import InvalidSignature

# The golden vector: computed once, checked against the reference package, then frozen. Any change
# to what is signed or how breaks every subscriber's verification, so it must break this test first.
SECRET = "whsec_YWxsbXlzbXMtY29ubmVjdG9yLXRlc3Rz"  # base64 of b"allmysms-connector-tests"
MESSAGE_ID = "msg_2Lx9c4RkQ7tVb1"
TIMESTAMP = 1767258000
BODY = b'{"type":"sms.delivery_receipt","timestamp":"2026-01-01T09:00:00Z","data":{}}'
SIGNATURE = "v1,OWnMcKFhAXtJohQfdexXe7VX6Zv2GVK3eaLBasXbFoo="

OTHER_SECRET = "whsec_" + base64.b64encode(b"another-secret-for-tests").decode()


def _reason(secrets, headers, body=BODY, now=TIMESTAMP, **kwargs) -> str:
    with pytest.raises(InvalidSignature) as caught:
        signing.verify(secrets, headers, body, now=now, **kwargs)
    return caught.value.reason


# --- new_secret -------------------------------------------------------------------------------------


def test_a_new_secret_is_whsec_and_24_random_bytes_in_standard_base64():
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[len("whsec_") :], validate=True)) == 24


def test_two_new_secrets_differ():
    assert signing.new_secret() != signing.new_secret()


def test_a_new_secret_is_accepted_by_the_reference_package():
    secret = signing.new_secret()
    now = int(time.time())
    verified = Webhook(secret).verify(BODY, signing.headers(secret, MESSAGE_ID, now, BODY))
    assert verified["type"] == "sms.delivery_receipt"


# --- derived_secret ---------------------------------------------------------------------------------


def test_a_subscriptions_secret_is_derived_from_the_secret_key_and_its_id_as_the_golden_vector_says():
    secret = signing.derived_secret("k" * 64, "sub_0123456789abcdef01234567")
    assert secret == "whsec_MaZfcGeQeS+kAXgxki8wDOq3eXQb4xX+7a2Z9lUdk4o="
    assert len(base64.b64decode(secret[len("whsec_") :], validate=True)) == 32  # Standard Webhooks: 24 to 64


def test_derived_secrets_differ_by_subscription_and_by_secret_key():
    secrets = {signing.derived_secret(key, sub) for key in ("k" * 64, "j" * 64) for sub in ("sub_a", "sub_b")}
    assert len(secrets) == 4


def test_a_derived_secret_is_accepted_by_the_reference_package():
    secret = signing.derived_secret("k" * 64, "sub_a")
    now = int(time.time())
    verified = Webhook(secret).verify(BODY, signing.headers(secret, MESSAGE_ID, now, BODY))
    assert verified["type"] == "sms.delivery_receipt"


def test_no_secret_is_derived_without_a_secret_key():
    with pytest.raises(ValueError, match="secret key"):
        signing.derived_secret(None, "sub_a")


# --- sign and headers -------------------------------------------------------------------------------


def test_the_golden_vector_signs_to_its_frozen_signature():
    assert signing.sign(SECRET, MESSAGE_ID, TIMESTAMP, BODY) == SIGNATURE


def test_headers_carry_the_id_the_timestamp_in_seconds_and_the_signature():
    assert signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY) == {
        "webhook-id": MESSAGE_ID,
        "webhook-timestamp": "1767258000",
        "webhook-signature": SIGNATURE,
    }


def test_the_signature_covers_the_body_id_and_timestamp():
    assert signing.sign(SECRET, MESSAGE_ID, TIMESTAMP, BODY + b" ") != SIGNATURE
    assert signing.sign(SECRET, MESSAGE_ID + "x", TIMESTAMP, BODY) != SIGNATURE
    assert signing.sign(SECRET, MESSAGE_ID, TIMESTAMP + 1, BODY) != SIGNATURE
    assert signing.sign(OTHER_SECRET, MESSAGE_ID, TIMESTAMP, BODY) != SIGNATURE


def test_a_secret_that_is_not_base64_is_refused_without_being_repeated():
    with pytest.raises(ValueError) as caught:
        signing.sign("whsec_not*base64!", MESSAGE_ID, TIMESTAMP, BODY)
    assert "not*base64" not in str(caught.value)


def test_an_empty_secret_is_refused():
    with pytest.raises(ValueError):
        signing.sign("whsec_", MESSAGE_ID, TIMESTAMP, BODY)


def test_a_body_given_as_text_is_refused_because_only_the_exact_bytes_can_be_signed():
    with pytest.raises(TypeError):
        signing.sign(SECRET, MESSAGE_ID, TIMESTAMP, BODY.decode())


def test_a_timestamp_that_is_not_whole_seconds_is_refused():
    with pytest.raises(TypeError):
        signing.sign(SECRET, MESSAGE_ID, 1767258000.5, BODY)


# --- cross-checks with the standardwebhooks package ---------------------------------------------------


def test_the_reference_package_accepts_our_headers():
    # The package checks the timestamp against the real clock.
    now = int(time.time())
    headers = signing.headers(SECRET, MESSAGE_ID, now, BODY)
    assert Webhook(SECRET).verify(BODY, headers) == {
        "type": "sms.delivery_receipt",
        "timestamp": "2026-01-01T09:00:00Z",
        "data": {},
    }


def test_the_reference_package_rejects_our_headers_for_another_body():
    headers = signing.headers(SECRET, MESSAGE_ID, int(time.time()), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"{}", b'{"a":1}'), headers)


def test_we_accept_what_the_reference_package_signs():
    moment = datetime.fromtimestamp(TIMESTAMP, UTC)
    signature = Webhook(SECRET).sign(MESSAGE_ID, moment, BODY.decode())
    headers = {"webhook-id": MESSAGE_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": signature}
    assert signing.verify([SECRET], headers, BODY, now=TIMESTAMP) is None


def test_a_body_with_non_ascii_bytes_signs_as_its_utf8_bytes_on_both_sides():
    body = '{"data":{"message":"Oui, à demain ☀"}}'.encode()
    now = int(time.time())
    headers = signing.headers(SECRET, MESSAGE_ID, now, body)
    Webhook(SECRET).verify(body, headers)
    signing.verify([SECRET], headers, body, now=now)
    theirs = Webhook(SECRET).sign(MESSAGE_ID, datetime.fromtimestamp(now, UTC), body.decode())
    assert theirs == headers["webhook-signature"]


# --- verify -----------------------------------------------------------------------------------------


def test_verify_accepts_the_golden_vector():
    headers = {"webhook-id": MESSAGE_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": SIGNATURE}
    assert signing.verify([SECRET], headers, BODY, now=TIMESTAMP) is None


def test_verify_reads_header_names_whatever_their_case():
    headers = {"Webhook-Id": MESSAGE_ID, "WEBHOOK-TIMESTAMP": str(TIMESTAMP), "Webhook-Signature": SIGNATURE}
    assert signing.verify([SECRET], headers, BODY, now=TIMESTAMP) is None


def test_a_tampered_body_is_rejected():
    headers = signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    assert _reason([SECRET], headers, body=BODY.replace(b"receipt", b"receipts")) == "no signature matches"


def test_a_tampered_id_is_rejected():
    headers = {**signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY), "webhook-id": "msg_other"}
    assert _reason([SECRET], headers) == "no signature matches"


def test_a_tampered_timestamp_is_rejected():
    headers = {**signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY), "webhook-timestamp": str(TIMESTAMP + 1)}
    assert _reason([SECRET], headers) == "no signature matches"


def test_a_signature_made_with_another_secret_is_rejected():
    headers = signing.headers(OTHER_SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    assert _reason([SECRET], headers) == "no signature matches"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_named_in_the_rejection(missing):
    headers = signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    del headers[missing]
    assert _reason([SECRET], headers) == f"the {missing} header is missing"


@pytest.mark.parametrize("stamp", ["1767258000.0", "-1767258000", "soon", "1e9", "9" * 40])
def test_a_timestamp_that_is_not_whole_seconds_is_rejected(stamp):
    headers = {**signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY), "webhook-timestamp": stamp}
    assert _reason([SECRET], headers) == "the webhook-timestamp header is not a whole number of seconds"


def test_a_timestamp_at_the_edge_of_the_tolerance_is_accepted():
    headers = signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    signing.verify([SECRET], headers, BODY, now=TIMESTAMP + 300)
    signing.verify([SECRET], headers, BODY, now=TIMESTAMP - 300)


def test_a_timestamp_older_than_the_tolerance_is_rejected_even_with_a_valid_signature():
    headers = signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    assert _reason([SECRET], headers, now=TIMESTAMP + 301) == "the webhook-timestamp is too old"


def test_a_timestamp_beyond_the_tolerance_in_the_future_is_rejected():
    headers = signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    assert _reason([SECRET], headers, now=TIMESTAMP - 301) == "the webhook-timestamp is in the future"


def test_the_tolerance_can_be_narrowed():
    headers = signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    signing.verify([SECRET], headers, BODY, now=TIMESTAMP + 10, tolerance=10)
    assert _reason([SECRET], headers, now=TIMESTAMP + 11, tolerance=10) == "the webhook-timestamp is too old"


def test_during_rotation_a_header_with_two_signatures_is_accepted_by_either_secret():
    old = signing.sign(SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    new = signing.sign(OTHER_SECRET, MESSAGE_ID, TIMESTAMP, BODY)
    headers = {"webhook-id": MESSAGE_ID, "webhook-timestamp": str(TIMESTAMP), "webhook-signature": f"{old} {new}"}
    signing.verify([SECRET], headers, BODY, now=TIMESTAMP)
    signing.verify([OTHER_SECRET], headers, BODY, now=TIMESTAMP)
    assert _reason([signing.new_secret()], headers) == "no signature matches"


def test_during_rotation_a_verifier_holding_both_secrets_accepts_either_signature():
    for secret in (SECRET, OTHER_SECRET):
        headers = signing.headers(secret, MESSAGE_ID, TIMESTAMP, BODY)
        assert signing.verify([SECRET, OTHER_SECRET], headers, BODY, now=TIMESTAMP) is None


def test_signatures_of_another_version_or_not_base64_are_ignored():
    headers = {**signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY)}
    valid = headers["webhook-signature"]
    headers["webhook-signature"] = f"v2,{valid[3:]} v1,***"
    assert _reason([SECRET], headers) == "no signature matches"
    headers["webhook-signature"] = f"v2,{valid[3:]} v1,*** {valid}"
    assert signing.verify([SECRET], headers, BODY, now=TIMESTAMP) is None


def test_verify_needs_at_least_one_secret():
    with pytest.raises(ValueError):
        signing.verify([], signing.headers(SECRET, MESSAGE_ID, TIMESTAMP, BODY), BODY, now=TIMESTAMP)
