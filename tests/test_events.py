"""Tests for connector.events.callbacks: callbacks from AllMySMS read into records, records into canonical events."""

import dataclasses
import json
from datetime import UTC, datetime
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from werkzeug.datastructures import MultiDict
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from connector.description import manifest
from connector.events import callbacks as events
from connector.events.callbacks import CallbackRejected, Event
from tests.contract import fixtures as contract

NOW = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
PHONE = "33611111111"

RECEIPT = {
    "smsId": "a1b2c3d4e5",
    "campaignId": "5012874",
    "phoneNumber": PHONE,
    "receptionDate": "2026-12-01 09:30:03",
    "status": "1",
    "statusText": "Delivered",
}
REPLY = {
    "smsMoId": "mo-77120",
    "smsId": "a1b2c3d4e5",
    "campaignId": "5012874",
    "phoneNumber": PHONE,
    "receptionDate": "2026-12-01 09:41:09",
    "message": "Yes, see you tomorrow",
}
RECEIPT_KEYS = {
    "sms_id",
    "campaign_id",
    "phone_number",
    "status",
    "status_code",
    "status_text",
    "received_at",
    "client_reference",
    "unreadable_fields",
}
REPLY_KEYS = {"reply_id", "sms_id", "campaign_id", "phone_number", "message", "received_at", "unreadable_fields"}


@pytest.fixture(scope="module")
def catalog():
    return manifest.load().catalog


def _event(record, **kwargs) -> Event:
    kwargs.setdefault("account", "demo")
    kwargs.setdefault("received_now", NOW)
    return events.normalise(record, **kwargs)


def _refusal(record, **kwargs) -> str:
    with pytest.raises(CallbackRejected) as caught:
        _event(record, **kwargs)
    return caught.value.reason


def _callback(method="POST", **builder) -> list[dict]:
    """read_callback over a request parsed by werkzeug, in the order the inbound route reads it."""
    request = Request(EnvironBuilder(path="/v1/inbound/allmysms/token", method=method, **builder).get_environ())
    body = request.get_data(cache=True)
    return events.read_callback(request.method, request.content_type or "", request.query_string, {}, body)


def _read_refusal(method="POST", content_type="application/json", query=None, form=None, body=b"") -> str:
    with pytest.raises(CallbackRejected) as caught:
        events.read_callback(method, content_type, query or {}, form or {}, body)
    return caught.value.reason


# --- read_callback: the shapes a callback may take -----------------------------------------------------


def test_a_get_callback_is_its_query_string_as_one_record():
    assert _callback("GET", query_string=RECEIPT) == [RECEIPT]


def test_a_post_form_callback_is_its_form_as_one_record():
    assert _callback(data=RECEIPT) == [RECEIPT]


def test_a_post_multipart_callback_is_its_form_as_one_record():
    assert _callback(data=RECEIPT, content_type="multipart/form-data") == [RECEIPT]


def test_a_post_form_callback_adds_the_query_parameters_the_form_lacks():
    form = {k: v for k, v in RECEIPT.items() if k != "campaignId"}
    assert _callback(data=form, query_string={"campaignId": "5012874"}) == [RECEIPT]


def test_in_a_post_form_callback_the_form_wins_over_the_query_whatever_the_case():
    records = _callback(data={"smsId": "from-form", "status": "1"}, query_string={"SMSID": "from-query", "x": "1"})
    assert records == [{"smsId": "from-form", "status": "1", "x": "1"}]


def test_a_post_json_object_is_one_record():
    assert _callback(json=RECEIPT) == [RECEIPT]


def test_a_post_json_list_of_objects_is_a_batch():
    assert _callback(json=[RECEIPT, REPLY]) == [RECEIPT, REPLY]


@pytest.mark.parametrize("key", ["acks", "mos", "events"])
def test_a_json_object_holding_one_list_of_objects_is_a_batch(key):
    assert _callback(json={key: [RECEIPT, REPLY]}) == [RECEIPT, REPLY]


def test_json_sent_as_text_plain_is_read_as_json():
    assert _callback(data=json.dumps(RECEIPT), content_type="text/plain; charset=utf-8") == [RECEIPT]


def test_a_json_content_type_with_a_charset_is_accepted():
    assert _callback(data=json.dumps([RECEIPT]), content_type="Application/JSON; charset=UTF-8") == [RECEIPT]


def test_a_post_with_an_empty_body_is_read_from_its_query_string():
    assert _callback(query_string=RECEIPT) == [RECEIPT]


def test_json_values_keep_their_types_in_the_record():
    record = {"smsId": 12345, "status": 1, "flash": False, "comment": None, "price": 0.15}
    assert _callback(json=record) == [record]


def test_a_batch_of_exactly_the_limit_is_accepted():
    assert len(_callback(json=[RECEIPT] * events.MAX_RECORDS)) == events.MAX_RECORDS


def test_non_ascii_text_in_a_json_body_survives():
    reply = {**REPLY, "message": "Oui, à demain ☀"}
    assert _callback(data=json.dumps(reply, ensure_ascii=False).encode(), content_type="application/json") == [reply]


# --- read_callback: what is refused --------------------------------------------------------------------


def test_invalid_json_is_refused():
    assert _read_refusal(body=b'{"smsId": ') == "the body is not valid JSON"


def test_a_json_body_that_is_not_utf8_and_declares_no_charset_is_read_as_latin_1():
    assert _callback(data=b'{"message": "\xe0 demain"}', content_type="application/json") == [{"message": "à demain"}]


def test_text_plain_that_is_not_json_is_refused():
    assert _read_refusal(content_type="text/plain", body=b"smsId=1&status=1") == "the body is not valid JSON"


@pytest.mark.parametrize("body", [b"NaN", b'{"status": Infinity}', b'{"status": -Infinity}'])
def test_json_constants_that_are_not_standard_json_are_refused(body):
    assert _read_refusal(body=body) == "the body is not valid JSON"


def test_json_nested_too_deeply_is_refused_without_crashing():
    assert _read_refusal(body=b"[" * 100_000 + b"]" * 100_000) == "the JSON body nests too deeply"


@pytest.mark.parametrize("body", [b'"smsId"', b"42", b"null", b"true", b'[{"smsId": "1"}, 2]', b'[["smsId"]]'])
def test_json_that_is_not_an_object_or_a_list_of_objects_is_refused(body):
    assert _read_refusal(body=body) == "the JSON body must be an object or a list of objects"


def test_an_empty_json_list_is_refused():
    assert _read_refusal(body=b"[]") == "the JSON list holds no records"


@pytest.mark.parametrize("body", [b"{}", b'[{"smsId": "1"}, {}]'])
def test_an_empty_json_record_is_refused(body):
    assert _read_refusal(body=body).endswith("the record has no fields")


def test_a_get_without_parameters_is_refused_as_an_empty_record():
    assert _read_refusal("GET", "", body=b"") == "the record has no fields"


def test_a_post_with_nothing_at_all_is_refused_as_an_empty_record():
    assert _read_refusal(content_type="", body=b"") == "the record has no fields"


def test_a_batch_over_the_limit_is_refused():
    body = json.dumps([RECEIPT] * (events.MAX_RECORDS + 1)).encode()
    assert _read_refusal(body=body) == "a callback may carry at most 1000 records"


def test_a_wrapped_batch_over_the_limit_is_refused():
    body = json.dumps({"acks": [RECEIPT] * (events.MAX_RECORDS + 1)}).encode()
    assert _read_refusal(body=body) == "a callback may carry at most 1000 records"


@pytest.mark.parametrize("value", [{"number": PHONE}, [PHONE]])
def test_a_record_with_a_nested_value_is_refused_without_quoting_the_value(value):
    reason = _read_refusal(body=json.dumps({**RECEIPT, "recipient": value}).encode())
    assert reason == "field 'recipient' holds a nested value; records are flat"
    assert PHONE not in reason


def test_a_form_that_is_not_utf8_and_declares_no_charset_is_read_as_latin_1():
    records = _callback(
        data=b"smsId=1&status=1&statusText=Remis+%E0+l%27op%E9rateur", content_type="application/x-www-form-urlencoded"
    )
    assert records == [{"smsId": "1", "status": "1", "statusText": "Remis à l'opérateur"}]


@pytest.mark.parametrize("where", ["json", "form", "query"])
def test_a_nul_character_in_any_field_is_refused(where):
    record = {**RECEIPT, "smsId": "a\x00b"}
    if where == "json":
        reason = _read_refusal(body=json.dumps(record).encode())
    elif where == "form":
        reason = _read_refusal(content_type="application/x-www-form-urlencoded", form=record)
    else:
        reason = _read_refusal(method="GET", query=record)
    assert reason == "field 'smsId' holds a NUL character"


def test_a_nested_value_in_a_batch_names_the_record():
    body = json.dumps([RECEIPT, {**RECEIPT, "details": {"a": 1}}]).encode()
    assert _read_refusal(body=body) == "record 1: field 'details' holds a nested value; records are flat"


def test_an_object_with_two_keys_holding_lists_is_one_record_and_so_refused_as_nested():
    body = json.dumps({"acks": [RECEIPT], "mos": [REPLY]}).encode()
    assert "holds a nested value" in _read_refusal(body=body)


@pytest.mark.parametrize("content_type", ["text/html", "application/octet-stream", ""])
def test_a_post_in_an_unsupported_content_type_is_refused(content_type):
    reason = _read_refusal(content_type=content_type, body=json.dumps(RECEIPT).encode())
    assert reason == "unsupported content type; send JSON, XML, a form or a query string"


def test_a_method_other_than_get_or_post_is_refused():
    assert _read_refusal("PUT", body=json.dumps(RECEIPT).encode()) == "the PUT method is not accepted; use GET or POST"


# --- normalise: delivery receipts -----------------------------------------------------------------------


def test_a_delivery_receipt_reads_into_every_field_of_the_event():
    event = _event({**RECEIPT, "CLIMSGID": "order-42"})
    assert event.type == "sms.delivery_receipt"
    assert event.timestamp == "2026-12-01T08:30:03Z"
    assert event.data == {
        "sms_id": "a1b2c3d4e5",
        "campaign_id": "5012874",
        "phone_number": "+33611111111",
        "status": "delivered",
        "status_code": 1,
        "status_text": "Delivered",
        "received_at": "2026-12-01T08:30:03Z",
        "client_reference": "order-42",
        "unreadable_fields": [],
    }
    assert event.id.startswith("evt_") and len(event.id) == 4 + 24


@pytest.mark.parametrize(
    ("code", "word"),
    [
        (1, "delivered"),
        (2, "undelivered"),
        (3, "pending"),
        (4, "rejected"),
        (5, "unknown_number"),
        (0, "unknown"),
        (6, "unknown"),
        (99, "unknown"),
        (-1, "unknown"),
    ],
)
def test_each_status_code_reads_as_its_word(code, word):
    event = _event({**RECEIPT, "status": str(code)})
    assert (event.data["status"], event.data["status_code"]) == (word, code)


def test_statut_is_read_as_the_status():
    record = {k: v for k, v in RECEIPT.items() if k != "status"} | {"statut": "2"}
    event = _event(record)
    assert (event.data["status"], event.data["status_code"]) == ("undelivered", 2)
    assert event.id == _event({**RECEIPT, "status": "2"}).id


def test_a_status_that_is_not_a_number_reads_as_unknown_with_no_code():
    event = _event({**RECEIPT, "status": "DELIVRD"})
    assert (event.data["status"], event.data["status_code"]) == ("unknown", None)


def test_two_receipts_with_different_non_numeric_statuses_have_different_ids():
    assert _event({**RECEIPT, "status": "DELIVRD"}).id != _event({**RECEIPT, "status": "EXPIRED"}).id


def test_the_status_text_may_come_as_a_comment():
    record = {k: v for k, v in RECEIPT.items() if k != "statusText"} | {"comment": "Remis"}
    assert _event(record).data["status_text"] == "Remis"


@pytest.mark.parametrize("key", ["CLIMSGID", "climsgid", "clientReference", "ClientReference"])
def test_the_client_reference_is_read_from_each_of_its_spellings(key):
    assert _event({**RECEIPT, key: "order-42"}).data["client_reference"] == "order-42"


def test_optional_receipt_fields_that_are_absent_read_as_null():
    event = _event({"smsId": "a1", "phoneNumber": PHONE, "status": "3"})
    assert event.data == {
        "sms_id": "a1",
        "campaign_id": None,
        "phone_number": "+33611111111",
        "status": "pending",
        "status_code": 3,
        "status_text": None,
        "received_at": None,
        "client_reference": None,
        "unreadable_fields": [],
    }


def test_optional_fields_sent_empty_read_as_null():
    event = _event({**RECEIPT, "campaignId": "", "statusText": "  ", "receptionDate": ""})
    assert (event.data["campaign_id"], event.data["status_text"], event.data["received_at"]) == (None, None, None)


# --- normalise: replies ---------------------------------------------------------------------------------


def test_a_reply_reads_into_every_field_of_the_event():
    event = _event(REPLY)
    assert event.type == "sms.reply_received"
    assert event.timestamp == "2026-12-01T08:41:09Z"
    assert event.data == {
        "reply_id": "mo-77120",
        "sms_id": "a1b2c3d4e5",
        "campaign_id": "5012874",
        "phone_number": "+33611111111",
        "message": "Yes, see you tomorrow",
        "received_at": "2026-12-01T08:41:09Z",
        "unreadable_fields": [],
    }


@pytest.mark.parametrize("key", ["message", "text", "mo", "MESSAGE", "Text"])
def test_the_reply_text_is_read_from_each_of_its_spellings(key):
    record = {k: v for k, v in REPLY.items() if k != "message"} | {key: "Oui"}
    event = _event(record)
    assert (event.type, event.data["message"]) == ("sms.reply_received", "Oui")


def test_a_reply_keeps_its_text_as_typed():
    assert _event({**REPLY, "message": "  Oui\nà demain ☀ "}).data["message"] == "  Oui\nà demain ☀ "


def test_a_reply_without_an_sms_mo_id_takes_its_id_field():
    record = {k: v for k, v in REPLY.items() if k != "smsMoId"} | {"id": "mo-1"}
    assert _event(record).data["reply_id"] == "mo-1"


def test_a_reply_with_both_ids_takes_the_sms_mo_id_and_keeps_id_in_raw():
    event = _event({**REPLY, "id": "row-9"})
    assert (event.data["reply_id"], event.raw) == ("mo-77120", {"id": "row-9"})


def test_a_reply_with_no_id_at_all_gets_a_stable_one_of_its_own():
    record = {k: v for k, v in REPLY.items() if k != "smsMoId"}
    first, again = _event(record), _event(dict(reversed(record.items())))
    other = _event({**record, "message": "No"})
    assert first.data["reply_id"].startswith("mo_")
    assert first.data["reply_id"] == again.data["reply_id"]
    assert first.data["reply_id"] != other.data["reply_id"]


def test_a_reply_with_a_status_field_is_still_a_reply_and_keeps_the_status_in_raw():
    event = _event({**REPLY, "status": "1"})
    assert (event.type, event.raw) == ("sms.reply_received", {"status": "1"})


def test_a_record_with_only_a_sms_mo_id_is_read_as_a_reply_kept_with_no_message():
    event = _event({"smsMoId": "mo-1", "phoneNumber": PHONE})
    assert (event.type, event.data["reply_id"], event.data["message"]) == ("sms.reply_received", "mo-1", None)
    assert event.data["unreadable_fields"] == []


def test_an_empty_sms_id_in_a_reply_reads_as_null():
    assert _event({**REPLY, "smsId": ""}).data["sms_id"] is None


# --- normalise: keys, numbers, phone numbers ---------------------------------------------------------


def test_keys_are_matched_whatever_their_case():
    shouting = {key.upper(): value for key, value in RECEIPT.items()}
    lower = {key.lower(): value for key, value in RECEIPT.items()}
    assert _event(shouting).data == _event(lower).data == _event(RECEIPT).data
    assert _event(shouting).raw == {}


def test_numbers_sent_as_json_numbers_read_like_numbers_sent_as_text():
    typed = {**RECEIPT, "smsId": 1234567, "campaignId": 5012874, "phoneNumber": 33611111111, "status": 1}
    text = {**RECEIPT, "smsId": "1234567", "campaignId": "5012874", "phoneNumber": "33611111111", "status": "1"}
    assert _event(typed).data == _event(text).data
    assert _event(typed).data["sms_id"] == "1234567"
    assert _event(typed).id == _event(text).id


def test_a_whole_number_sent_as_a_float_reads_as_an_integer():
    assert _event({**RECEIPT, "status": 4.0, "campaignId": 5012874.0}).data["status_code"] == 4
    assert _event({**RECEIPT, "campaignId": 5012874.0}).data["campaign_id"] == "5012874"


@pytest.mark.parametrize("raw", ["33611111111", "+33611111111", "0611111111", "0033611111111", "33 6 11 11 11 11"])
def test_the_phone_number_reads_as_e164_whichever_way_it_is_written(raw):
    assert _event({**RECEIPT, "phoneNumber": raw}).data["phone_number"] == "+33611111111"


def test_a_foreign_number_without_its_plus_reads_in_its_own_country():
    assert _event({**RECEIPT, "phoneNumber": "32470123456"}).data["phone_number"] == "+32470123456"


def test_fields_that_are_not_mapped_are_kept_in_raw_with_their_spelling():
    event = _event({**RECEIPT, "operator": "Orange", "Price": 0.15, "flash": None})
    assert event.raw == {"operator": "Orange", "Price": 0.15, "flash": None}


def test_mapped_fields_are_not_kept_in_raw():
    assert _event({**RECEIPT, "CLIMSGID": "x", "statut": "1"}).raw == {"statut": "1"}


def test_the_raw_fields_do_not_reach_the_json_sent_to_subscribers():
    assert set(_event({**RECEIPT, "operator": "Orange"}).as_json()) == {"id", "type", "timestamp", "data"}


def test_an_event_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        _event(RECEIPT).id = "evt_other"


# --- normalise: times ----------------------------------------------------------------------------------


def test_a_winter_reception_date_is_paris_time_one_hour_ahead_of_utc():
    assert _event({**RECEIPT, "receptionDate": "2026-01-15 09:30:00"}).data["received_at"] == "2026-01-15T08:30:00Z"


def test_a_summer_reception_date_is_paris_time_two_hours_ahead_of_utc():
    assert _event({**RECEIPT, "receptionDate": "2026-07-15 09:30:00"}).data["received_at"] == "2026-07-15T07:30:00Z"


def test_the_hour_that_happens_twice_in_autumn_is_read_as_the_first():
    event = _event({**RECEIPT, "receptionDate": "2026-10-25 02:30:00"})
    assert event.data["received_at"] == "2026-10-25T00:30:00Z"


def test_the_reception_date_can_be_read_in_another_zone():
    event = _event({**RECEIPT, "receptionDate": "2026-01-15 09:30:00"}, zone="America/New_York")
    assert event.data["received_at"] == "2026-01-15T14:30:00Z"


def test_the_event_time_is_the_reception_date():
    assert _event(RECEIPT, received_now=datetime(2030, 1, 1, tzinfo=UTC)).timestamp == "2026-12-01T08:30:03Z"


def test_without_a_reception_date_the_event_time_is_when_the_callback_arrived():
    record = {k: v for k, v in RECEIPT.items() if k != "receptionDate"}
    event = _event(record, received_now=datetime(2026, 12, 1, 10, 0, 7, 500, tzinfo=UTC))
    assert (event.timestamp, event.data["received_at"]) == ("2026-12-01T10:00:07Z", None)


def test_the_arrival_time_never_changes_the_event_id():
    record = {k: v for k, v in REPLY.items() if k not in ("receptionDate", "smsMoId")}
    early = _event(record, received_now=datetime(2026, 12, 1, 10, 0, tzinfo=UTC))
    late = _event(record, received_now=datetime(2026, 12, 2, 11, 0, tzinfo=UTC))
    assert early.timestamp != late.timestamp
    assert early.id == late.id


@pytest.mark.parametrize(
    "date",
    ["01/12/2026 09:30:03", "2026-13-01 09:30:03", "2026-02-30 09:30:03", "2026-12-01", "tomorrow", 1764577803, True],
)
def test_a_reception_date_that_is_not_a_date_and_time_is_flagged_and_kept_as_sent(date):
    event = _event({**RECEIPT, "receptionDate": date})
    assert (event.data["received_at"], event.timestamp) == (None, "2026-12-01T10:00:00Z")
    assert event.data["unreadable_fields"] == ["receptionDate"]
    assert event.raw == {"receptionDate": date}


# --- normalise: stable ids -------------------------------------------------------------------------------


def test_the_same_receipt_sent_by_get_then_by_post_json_has_the_same_id():
    (by_get,) = _callback("GET", query_string=RECEIPT)
    (by_json,) = _callback(json={**RECEIPT, "status": 1})
    (by_form,) = _callback(data=RECEIPT)
    assert _event(by_get).id == _event(by_json).id == _event(by_form).id


def test_the_same_reply_with_keys_in_another_order_and_case_has_the_same_id():
    shuffled = {key.lower(): value for key, value in reversed(REPLY.items())}
    assert _event(shuffled).id == _event(REPLY).id


def test_a_pending_then_a_delivered_receipt_of_the_same_sms_have_different_ids():
    pending = _event({**RECEIPT, "status": "3", "receptionDate": "2026-12-01 09:30:01"})
    delivered = _event({**RECEIPT, "status": "1", "receptionDate": "2026-12-01 09:30:03"})
    same_time = _event({**RECEIPT, "status": "3"})
    assert len({pending.id, delivered.id, same_time.id}) == 3


def test_receipts_of_different_sms_have_different_ids():
    assert _event(RECEIPT).id != _event({**RECEIPT, "smsId": "other"}).id


def test_the_same_callback_for_two_accounts_has_two_ids():
    assert _event(RECEIPT, account="demo").id != _event(RECEIPT, account="other").id


def test_replies_with_different_ids_have_different_event_ids():
    assert _event(REPLY).id != _event({**REPLY, "smsMoId": "mo-77121"}).id


def test_fields_outside_the_identity_do_not_change_the_id():
    assert _event(RECEIPT).id == _event({**RECEIPT, "statusText": "OK", "operator": "SFR"}).id


# --- normalise: what is refused ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "reason"),
    [("smsId", "the delivery receipt has no smsId")],
)
def test_a_receipt_without_a_required_field_is_refused_naming_it(missing, reason):
    assert _refusal({k: v for k, v in RECEIPT.items() if k != missing}) == reason


def test_a_receipt_with_an_empty_status_is_kept_as_unknown_and_flagged():
    event = _event({**RECEIPT, "status": ""})
    assert (event.data["status"], event.data["status_code"], event.data["unreadable_fields"]) == (
        "unknown",
        None,
        ["status"],
    )


def test_a_receipt_with_an_empty_sms_id_is_refused():
    assert _refusal({**RECEIPT, "smsId": " "}) == "the delivery receipt has no smsId"


@pytest.mark.parametrize("record", [RECEIPT, REPLY])
def test_a_record_without_a_phone_number_is_kept_with_a_null_number_and_nothing_flagged(record):
    event = _event({k: v for k, v in record.items() if k != "phoneNumber"})
    assert (event.data["phone_number"], event.data["unreadable_fields"]) == (None, [])


@pytest.mark.parametrize("message", ["", "   ", "\n"])
def test_a_reply_with_an_empty_message_and_no_reply_id_is_refused(message):
    record = {k: v for k, v in REPLY.items() if k != "smsMoId"}
    assert _refusal({**record, "message": message}) == "the reply has an empty message"


@pytest.mark.parametrize("message", ["", "   "])
def test_a_reply_with_an_empty_message_and_its_reply_id_is_kept_as_typed(message):
    assert _event({**REPLY, "message": message}).data["message"] == message


def test_a_record_that_is_neither_a_receipt_nor_a_reply_is_refused():
    reason = _refusal({"smsId": "a1", "phoneNumber": PHONE})
    assert reason == "the record is neither a delivery receipt (no status) nor a reply (no message)"


@pytest.mark.parametrize("phone", ["336", "hello", "0000000000", "+999123456789"])
def test_an_unreadable_phone_number_is_kept_as_sent_and_flagged(catalog, phone):
    event = _event({**RECEIPT, "phoneNumber": phone})
    assert (event.data["phone_number"], event.data["unreadable_fields"]) == (phone, ["phoneNumber"])
    assert event.raw == {"phoneNumber": phone}
    assert catalog.check("events/sms.delivery_receipt.json", event.as_json()) == []


def test_a_field_given_twice_with_different_values_is_refused():
    assert _refusal({**RECEIPT, "SMSID": "other"}) == "field 'smsId' is given twice with different values"


def test_a_field_given_twice_with_the_same_value_is_accepted():
    assert _event({**RECEIPT, "SMSID": RECEIPT["smsId"]}).data["sms_id"] == RECEIPT["smsId"]


def test_a_mapped_field_that_is_true_or_false_is_refused():
    assert _refusal({**RECEIPT, "smsId": True}) == "field 'smsId' is true or false, not text"


def test_no_refusal_quotes_the_phone_number_or_the_message():
    secret_text = "my code is 4242"
    cases = [
        {**REPLY, "message": secret_text, "smsMoId": True},
        {**REPLY, "message": secret_text, "phoneNumber": "33600", "SMSMOID": "other"},
        {**RECEIPT, "smsId": ""},
    ]
    for record in cases:
        reason = _refusal(record)
        assert PHONE not in reason and "33600" not in reason and secret_text not in reason


# --- events against their schemas ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        RECEIPT,
        {**RECEIPT, "CLIMSGID": "order-42", "status": 5},
        {"smsId": "a1", "phoneNumber": PHONE, "statut": "weird"},
        {"SMSID": 77, "PHONENUMBER": 33611111111, "STATUS": 2, "COMMENT": "Echec"},
    ],
)
def test_receipt_events_match_their_schema(catalog, record):
    event = _event(record)
    assert set(event.data) == RECEIPT_KEYS
    errors = list(catalog.validator("events/sms.delivery_receipt.json").iter_errors(event.as_json()))
    assert errors == []


@pytest.mark.parametrize(
    "record",
    [
        REPLY,
        {"phoneNumber": PHONE, "text": "Oui"},
        {"id": 9, "phoneNumber": "+32470123456", "mo": "Ja", "smsId": ""},
        {"SMSMOID": "mo-1", "PHONENUMBER": PHONE, "MESSAGE": "Stop ☀", "RECEPTIONDATE": "2026-07-01 00:15:00"},
    ],
)
def test_reply_events_match_their_schema(catalog, record):
    event = _event(record)
    assert set(event.data) == REPLY_KEYS
    errors = list(catalog.validator("events/sms.reply_received.json").iter_errors(event.as_json()))
    assert errors == []


def test_the_schema_validator_catches_a_broken_event(catalog):
    broken = {**_event(RECEIPT).as_json(), "type": "sms.reply_received"}
    assert list(catalog.validator("events/sms.delivery_receipt.json").iter_errors(broken)) != []


def test_a_json_batch_of_a_receipt_and_a_reply_reads_into_two_valid_events(catalog):
    records = _callback(json={"events": [RECEIPT, REPLY]})
    receipt, reply = (_event(record) for record in records)
    assert (receipt.type, reply.type) == ("sms.delivery_receipt", "sms.reply_received")
    assert catalog.check("events/sms.delivery_receipt.json", receipt.as_json()) == []
    assert catalog.check("events/sms.reply_received.json", reply.as_json()) == []


def test_a_form_callback_with_a_multidict_reads_each_key_once():
    form = MultiDict([("smsId", "a1"), ("smsId", "a2"), ("phoneNumber", PHONE), ("status", "1")])
    (record,) = events.read_callback("POST", "application/x-www-form-urlencoded", {}, form, b"")
    assert _event(record).data["sms_id"] == "a1"


# --- read_callback: XML -------------------------------------------------------------------------------

XML_RECEIPT = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ack><smsId>a1b2c3d4e5</smsId><campaignId>5012874</campaignId>'
    b"<phoneNumber>33611111111</phoneNumber><receptionDate>2026-12-01 09:30:03</receptionDate>"
    b"<status>1</status><statusText>Delivered</statusText></ack>"
)


def _xml_refusal(body: bytes, content_type="application/xml") -> str:
    return _read_refusal(content_type=content_type, body=body)


def test_an_xml_body_whose_root_holds_the_fields_is_one_record():
    assert _callback(data=XML_RECEIPT, content_type="application/xml") == [RECEIPT]


@pytest.mark.parametrize(
    "content_type", ["text/xml", "application/xml; charset=utf-8", "application/soap+xml", "text/plain"]
)
def test_xml_is_read_under_each_xml_content_type_and_as_text_plain(content_type):
    assert _callback(data=XML_RECEIPT, content_type=content_type) == [RECEIPT]


def test_an_xml_root_holding_elements_of_fields_is_a_batch_of_records():
    body = (
        "<callbacks>"
        + "".join(
            f"<record>{''.join(f'<{k}>{v}</{k}>' for k, v in record.items())}</record>" for record in (RECEIPT, REPLY)
        )
        + "</callbacks>"
    ).encode()
    assert _callback(data=body, content_type="text/xml") == [RECEIPT, REPLY]


def test_an_xml_reply_keeps_its_cdata_text_as_typed_and_namespaces_are_ignored():
    body = (
        '<mo xmlns="urn:allmysms"><smsMoId>mo-1</smsMoId><phoneNumber>33611111111</phoneNumber>'
        "<message><![CDATA[Oui <b> & ]]]]><![CDATA[> à demain\n]]></message></mo>"
    ).encode()
    (record,) = _callback(data=body, content_type="application/xml")
    assert record == {"smsMoId": "mo-1", "phoneNumber": "33611111111", "message": "Oui <b> & ]]> à demain\n"}


def test_an_empty_xml_element_reads_as_an_absent_field():
    (record,) = _callback(
        data=XML_RECEIPT.replace(b"<campaignId>5012874</campaignId>", b"<campaignId/>"), content_type="application/xml"
    )
    assert _event(record).data["campaign_id"] is None


def test_a_repeated_xml_element_keeps_its_first_value_as_a_repeated_form_key_does():
    (record,) = _callback(
        data=b"<ack><smsId>a1</smsId><smsId>a2</smsId><status>1</status></ack>", content_type="application/xml"
    )
    assert record == {"smsId": "a1", "status": "1"}


def test_an_xml_batch_of_exactly_the_limit_is_accepted_and_one_more_is_refused():
    record = b"<ack><smsId>a1</smsId><status>1</status></ack>"
    assert (
        len(_callback(data=b"<acks>" + record * events.MAX_RECORDS + b"</acks>", content_type="application/xml"))
        == events.MAX_RECORDS
    )
    over = b"<acks>" + record * (events.MAX_RECORDS + 1) + b"</acks>"
    assert _xml_refusal(over) == "a callback may carry at most 1000 records"


@pytest.mark.parametrize("body", [b"<ack><smsId>1</smsId>", b"<ack>", b"not xml", b"<a></b>", b"<ack/><ack/>"])
def test_malformed_xml_is_refused(body):
    assert _xml_refusal(body) == "the body is not valid XML"


@pytest.mark.parametrize(
    "body",
    [
        b'<?xml version="1.0"?><!DOCTYPE ack [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b"<ack><smsId>&b;</smsId><status>1</status></ack>",
        b'<?xml version="1.0"?><!DOCTYPE ack [<!ENTITY x SYSTEM "file:///etc/passwd">]><ack><smsId>&x;</smsId></ack>',
        b'<?xml version="1.0"?><!DOCTYPE ack SYSTEM "http://127.0.0.1:9/ack.dtd"><ack><smsId>1</smsId></ack>',
    ],
)
def test_xml_with_a_dtd_or_entities_is_refused_before_any_is_expanded_or_fetched(body):
    assert _xml_refusal(body) == "the XML body declares a DTD or entities, which are not accepted"


def test_an_xml_field_holding_elements_is_refused_as_nested_naming_the_record():
    body = b"<acks><ack><smsId>1</smsId><status>1</status></ack><ack><smsId><a>1</a></smsId></ack></acks>"
    assert _xml_refusal(body) == "record 1: field 'smsId' holds a nested value; records are flat"


def test_an_xml_root_mixing_fields_and_records_is_refused():
    body = b"<acks><smsId>1</smsId><ack><smsId>2</smsId><status>1</status></ack></acks>"
    assert _xml_refusal(body) == "the XML root holds both fields and elements holding fields; records are flat"


def test_an_xml_root_without_fields_is_refused_as_an_empty_record():
    assert _xml_refusal(b"<ack>just text</ack>") == "the record has no fields"


def test_xml_nested_very_deeply_is_refused_without_crashing():
    reason = _xml_refusal(b"<a>" * 100_000 + b"</a>" * 100_000)
    assert reason == "record 0: field 'a' holds a nested value; records are flat"


# --- read_callback: charsets --------------------------------------------------------------------------

LATIN_REPLY = {**REPLY, "message": "Très bien, à demain"}


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=ISO-8859-1",
        "application/x-www-form-urlencoded; charset=windows-1252",
        "application/x-www-form-urlencoded",
    ],
)
def test_a_latin_1_form_is_read_with_its_accents_whether_or_not_it_declares_its_charset(content_type):
    body = urlencode(LATIN_REPLY, encoding="latin-1").encode()
    (record,) = _callback(data=body, content_type=content_type)
    assert record == LATIN_REPLY
    assert _event(record).data["unreadable_fields"] == []


def test_a_latin_1_form_with_raw_bytes_is_read_as_its_declared_charset():
    body = b"smsMoId=mo-77120&phoneNumber=33611111111&message=Tr\xe8s bien \x80 50"
    (record,) = _callback(data=body, content_type="application/x-www-form-urlencoded; charset=iso-8859-1")
    assert record["message"] == "Très bien € 50"


def test_a_latin_1_query_string_is_read_with_its_accents():
    (record,) = _callback("GET", query_string=urlencode(LATIN_REPLY, encoding="latin-1"))
    assert record == LATIN_REPLY


def test_a_latin_1_multipart_form_is_read_whether_the_part_or_nobody_declares_the_charset():
    boundary = "XyZ"
    parts = [
        b'--XyZ\r\nContent-Disposition: form-data; name="smsMoId"\r\n\r\nmo-1\r\n',
        b'--XyZ\r\nContent-Disposition: form-data; name="message"\r\n\r\nTr\xe8s\r\n',
        b'--XyZ\r\nContent-Disposition: form-data; name="statusText"\r\n'
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nd\xc3\xa9j\xc3\xa0\r\n",
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n\r\n\xff\xfe\r\n',
        b"--XyZ--\r\n",
    ]
    (record,) = _callback(data=b"".join(parts), content_type=f"multipart/form-data; boundary={boundary}")
    assert record == {"smsMoId": "mo-1", "message": "Très", "statusText": "déjà"}


def test_a_json_body_declaring_latin_1_is_read_in_it():
    body = json.dumps(LATIN_REPLY, ensure_ascii=False).encode("latin-1")
    assert _callback(data=body, content_type="application/json; charset=ISO-8859-1") == [LATIN_REPLY]


def test_an_xml_body_is_read_in_the_encoding_its_declaration_names_unless_the_content_type_names_one():
    latin = (
        '<?xml version="1.0" encoding="ISO-8859-1"?><mo><smsMoId>mo-1</smsMoId><message>Très</message></mo>'
    ).encode("latin-1")
    assert _callback(data=latin, content_type="text/xml")[0]["message"] == "Très"
    utf8 = latin.decode("latin-1").encode("utf-8")
    assert _callback(data=utf8, content_type="text/xml; charset=utf-8")[0]["message"] == "Très"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (
            "application/x-www-form-urlencoded; charset=utf-8",
            b"smsMoId=mo-77120&phoneNumber=33611111111&message=Tr%E8s+bien&campaignId=5012874",
        ),
        (
            "application/json; charset=utf-8",
            b'{"smsMoId": "mo-77120", "phoneNumber": "33611111111", "message": "Tr\xe8s bien", '
            b'"campaignId": "5012874"}',
        ),
        (
            "application/xml; charset=utf-8",
            b"<mo><smsMoId>mo-77120</smsMoId><phoneNumber>33611111111</phoneNumber><message>Tr\xe8s bien</message>"
            b"<campaignId>5012874</campaignId></mo>",
        ),
    ],
)
def test_text_not_valid_in_its_declared_charset_is_kept_flagged_and_the_rest_read(catalog, content_type, body):
    (record,) = _callback(data=body, content_type=content_type)
    event = _event(record)
    assert event.data["message"] == "Tr\ufffds bien"
    assert (event.data["reply_id"], event.data["campaign_id"]) == ("mo-77120", "5012874")
    assert event.data["unreadable_fields"] == ["message"]
    assert event.raw == {"message": "Tr\ufffds bien"}
    assert catalog.check("events/sms.reply_received.json", event.as_json()) == []


def test_a_json_lone_surrogate_escape_is_kept_as_the_replacement_character_and_flagged():
    (record,) = _callback(
        data=b'{"smsMoId": "mo-1", "message": "a\\ud800b", "phoneNumber": "33611111111"}',
        content_type="application/json",
    )
    event = _event(record)
    assert (event.data["message"], event.data["unreadable_fields"]) == ("a\ufffdb", ["message"])


def test_an_id_that_is_not_valid_in_its_declared_charset_refuses_the_record():
    (record,) = _callback(data=b"smsId=a%FF&status=1", content_type="application/x-www-form-urlencoded; charset=utf-8")
    assert _refusal(record) == "field 'smsId' is not valid text in the charset it was sent in"


# --- normalise: what cannot be read is flagged, never a reason to refuse ------------------------------


@pytest.mark.parametrize(
    "date",
    [
        "2026-12-01T09:30:03",
        "2026-12-01 09:30:03.123",
        "2026-12-01T09:30:03,5",
        "2026-12-01T08:30:03Z",
        "2026-12-01T08:30:03.999z",
        "2026-12-01T09:30:03+01:00",
        "2026-12-01 03:30:03-0500",
    ],
)
def test_a_reception_date_with_a_t_a_fraction_or_a_zone_reads_as_the_same_instant_and_id(date):
    event = _event({**RECEIPT, "receptionDate": date})
    assert (event.data["received_at"], event.data["unreadable_fields"]) == ("2026-12-01T08:30:03Z", [])
    assert event.id == _event(RECEIPT).id


def test_the_same_reply_with_an_iso_date_then_the_documented_one_has_one_id():
    record = {k: v for k, v in REPLY.items() if k != "smsMoId"}
    iso = _event({**record, "receptionDate": "2026-12-01T09:41:09.000"})
    assert iso.id == _event(record).id and iso.data["reply_id"] == _event(record).data["reply_id"]


def test_a_receipt_with_an_unreadable_date_keeps_one_id_and_differs_from_another_unreadable_date():
    first = _event({**RECEIPT, "receptionDate": "01/12/2026 09:30:03"})
    again = _event({**RECEIPT, "receptionDate": "01/12/2026 09:30:03"}, received_now=datetime(2026, 12, 2, tzinfo=UTC))
    other = _event({**RECEIPT, "receptionDate": "01/12/2026 09:30:04"})
    assert first.id == again.id
    assert len({first.id, other.id, _event(RECEIPT).id}) == 3


def test_code_and_description_read_as_the_status_and_its_text_with_the_same_id():
    record = {k: v for k, v in RECEIPT.items() if k not in ("status", "statusText")}
    event = _event({**record, "code": "1", "description": "Delivered"})
    assert event.data == _event(RECEIPT).data
    assert (event.id, event.raw) == (_event(RECEIPT).id, {})


@pytest.mark.parametrize(
    ("key", "status"), [("status", "DELIVRD"), ("code", "OK"), ("statut", "1.5"), ("status", True)]
)
def test_a_status_that_is_not_a_code_is_kept_as_unknown_flagged_with_its_value_in_raw(catalog, key, status):
    record = {k: v for k, v in RECEIPT.items() if k != "status"} | {key: status}
    event = _event(record)
    assert (event.data["status"], event.data["status_code"]) == ("unknown", None)
    assert (event.data["unreadable_fields"], event.raw) == ([key], {key: status})
    assert catalog.check("events/sms.delivery_receipt.json", event.as_json()) == []


def test_every_unreadable_field_of_one_record_is_listed_and_the_record_kept(catalog):
    event = _event(
        {
            **RECEIPT,
            "phoneNumber": "not a number",
            "receptionDate": "yesterday",
            "status": "OK",
            "campaignId": True,
            "operator": "Orange",
        }
    )
    assert event.data["unreadable_fields"] == ["campaignId", "phoneNumber", "receptionDate", "status"]
    assert event.raw == {
        "phoneNumber": "not a number",
        "receptionDate": "yesterday",
        "status": "OK",
        "campaignId": True,
        "operator": "Orange",
    }
    assert (event.data["sms_id"], event.data["campaign_id"], event.data["phone_number"]) == (
        "a1b2c3d4e5",
        None,
        "not a number",
    )
    assert catalog.check("events/sms.delivery_receipt.json", event.as_json()) == []


def test_a_field_given_twice_with_different_values_is_flagged_when_it_is_not_an_id():
    event = _event({**REPLY, "message": "Oui", "MESSAGE": "Non"})
    assert (event.data["message"], event.data["unreadable_fields"]) == (None, ["message"])
    assert event.raw == {"message": "Oui", "MESSAGE": "Non"}


def test_an_unreadable_reply_phone_number_still_tells_replies_without_ids_apart():
    record = {k: v for k, v in REPLY.items() if k != "smsMoId"}
    first, other = _event({**record, "phoneNumber": "hello"}), _event({**record, "phoneNumber": "bonjour"})
    assert first.id != other.id and first.id == _event({**record, "phoneNumber": "hello"}).id


def test_a_flagged_event_fails_its_schema_if_its_number_is_not_e164_and_not_flagged(catalog):
    event = _event({**RECEIPT, "phoneNumber": "hello"}).as_json()
    event["data"]["unreadable_fields"] = []
    assert catalog.check("events/sms.delivery_receipt.json", event) != []


# --- opt-outs: STOP list entries ---------------------------------------------------------------------

STOP = {"phoneNumber": "33611111111", "comment": "stop", "receptionDate": "2026-12-01 09:00:00"}


def _opt_outs(entries, **kwargs) -> list[Event]:
    return events.opt_outs(entries, account="demo", **kwargs)


def test_an_opt_out_reads_into_every_field_of_the_event():
    (event,) = _opt_outs([STOP])
    assert (event.type, event.timestamp) == ("sms.opt_out", "2026-12-01T08:00:00Z")
    assert event.data == {
        "phone_number": "+33611111111",
        "reason": "stop",
        "received_at": "2026-12-01T08:00:00Z",
        "unreadable_fields": [],
    }


def test_an_opt_out_alone_at_its_number_and_time_keeps_the_id_it_always_had():
    # The id earlier versions gave this entry: platforms that saw it must not see it again as new.
    assert _opt_outs([STOP])[0].id == "evt_4ae569fec885085aaddaa515"


def test_opt_outs_of_one_number_in_one_second_with_different_comments_have_different_ids():
    entries = [STOP, {**STOP, "comment": "Refused"}, {**STOP, "comment": "manual unsubscribe"}]
    assert len({event.id for event in _opt_outs(entries)}) == 3


def test_identical_opt_out_entries_have_different_ids_that_stay_the_same_at_every_poll():
    entries = [STOP, dict(STOP), {**STOP, "comment": "Refused"}, dict(STOP)]
    ids = [event.id for event in _opt_outs(entries)]
    assert len(set(ids)) == 4
    assert [event.id for event in _opt_outs([dict(entry) for entry in entries])] == ids


def test_an_opt_out_whose_number_or_date_cannot_be_read_is_kept_flagged(catalog):
    (event,) = _opt_outs([{**STOP, "phoneNumber": "33 6 xx", "receptionDate": "hier"}])
    assert event.data == {
        "phone_number": "33 6 xx",
        "reason": "stop",
        "received_at": None,
        "unreadable_fields": ["phoneNumber", "receptionDate"],
    }
    assert event.raw == {"phoneNumber": "33 6 xx", "receptionDate": "hier"}
    assert catalog.check("events/sms.opt_out.json", event.as_json()) == []


def test_an_opt_out_entry_without_a_number_or_that_is_not_an_object_is_left_out():
    assert [event.data["phone_number"] for event in _opt_outs([{"comment": "stop"}, "33622222222", STOP])] == [
        "+33611111111"
    ]


# --- contract fixtures: callbacks as public sources show them ----------------------------------------

_EXPECTED_DATA = {
    "sms_id": "sms_id",
    "sms_mo_id": "reply_id",
    "campaign_id": "campaign_id",
    "phone_number_e164": "phone_number",
    "status_code": "status_code",
    "status_text": "status_text",
    "message": "message",
}


@pytest.mark.parametrize("fixture", contract.callbacks(), ids=lambda fixture: fixture.name)
def test_every_contract_callback_reads_into_the_event_its_source_shows(catalog, fixture):
    records = events.read_callback(
        fixture.http_method, fixture.content_type or "", fixture.query_string().encode(), {}, fixture.body()
    )
    (event,) = (_event(record) for record in records)
    assert event.type == {"delivery_receipt": "sms.delivery_receipt", "reply": "sms.reply_received"}[fixture.kind]
    expected = {_EXPECTED_DATA[key]: value for key, value in fixture.expect.items() if key in _EXPECTED_DATA}
    assert {key: event.data[key] for key in expected} == expected
    local = datetime.strptime(fixture.expect["received_local"], "%Y-%m-%d %H:%M:%S").replace(
        tzinfo=ZoneInfo("Europe/Paris")
    )
    assert event.data["received_at"] == local.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert set(fixture.expect) <= set(_EXPECTED_DATA) | {"received_local"}
    assert event.data["unreadable_fields"] == []
    assert catalog.check(f"events/{event.type}.json", event.as_json()) == []


# --- numbers no float or int holds -----------------------------------------------------------------------


def test_a_json_number_too_large_for_a_float_is_kept_as_the_text_it_was_sent_as():
    body = b'{"smsId": "a1", "status": 1, "campaignId": 1e400, "extra": -1E999, "small": 1.5}'
    (record,) = events.read_callback("POST", "application/json", b"", {}, body)
    assert record == {"smsId": "a1", "status": 1, "campaignId": "1e400", "extra": "-1E999", "small": 1.5}
    event = _event(record)
    assert event.data["campaign_id"] == "1e400" and event.data["unreadable_fields"] == []
    # What is stored and sent on is JSON: infinity is not.
    assert json.loads(json.dumps(event.raw, allow_nan=False)) == {"extra": "-1E999", "small": 1.5}


def test_a_status_too_large_for_a_float_is_an_unreadable_status_not_infinity():
    (record,) = events.read_callback("POST", "application/json", b"", {}, b'{"smsId": "a1", "status": 1e400}')
    event = _event(record)
    assert (event.data["status"], event.data["status_code"], event.data["unreadable_fields"]) == (
        "unknown",
        None,
        ["status"],
    )
    assert event.raw == {"status": "1e400"}


def test_a_json_integer_longer_than_python_reads_is_kept_as_its_text_not_refused():
    digits = "7" * 5000
    (record,) = events.read_callback(
        "POST", "application/json", b"", {}, b'{"smsId": "a1", "status": 1, "campaignId": ' + digits.encode() + b"}"
    )
    assert record["campaignId"] == digits and _event(record).data["campaign_id"] == digits


def test_a_callback_number_too_large_for_a_float_is_stored_and_listed_as_its_text(backend, sandbox):
    from connector import create_app
    from tests.conftest import DEMO, connector_settings

    app = create_app(connector_settings(sandbox.url))
    client = app.test_client()
    auth = {"Authorization": "Basic ZGVtbzpkZW1vLWFwaS1rZXk="}
    assert DEMO == ("demo", "demo-api-key")
    inbound = "/v1/inbound/allmysms/" + client.get("/v1/me", headers=auth).get_json()["inbound_url"].rsplit("/", 1)[1]
    answer = client.post(
        inbound,
        data=b'{"smsId": "big-1", "status": 1, "campaignId": 1e400, "note": -1e400}',
        content_type="application/json",
    )
    assert answer.status_code == 200 and answer.get_json()["accepted"] == 1
    (listed,) = client.get("/v1/triggers/delivery_receipt/events", headers=auth).get_json()
    assert listed["data"]["campaign_id"] == "1e400"
    stored = app.extensions["connector"].store.views.event(listed["id"])
    assert stored["raw"] == {"note": "-1e400"} and stored["data"]["campaign_id"] == "1e400"


@pytest.mark.parametrize("charset", ["base64", "zlib", "rot13", "hex"])
def test_a_charset_naming_a_codec_that_is_not_a_text_encoding_is_read_as_if_none_were_declared(charset):
    body = '{"smsId": "a1", "status": 1, "statusText": "Délivré"}'.encode()
    (record,) = events.read_callback("POST", f"application/json; charset={charset}", b"", {}, body)
    assert record == {"smsId": "a1", "status": 1, "statusText": "Délivré"}
