"""Tests for connector.outcomes: every AllMySMS reply status mapped to a result word or an error."""

import pytest

from connector import outcomes
from connector.errors import AuthenticationFailed, CreditExhausted, InvalidInput, UpstreamFailed

ALLMYSMS_TEXT = "Texte renvoyé par AllMySMS"


def _raised(reply, **kwargs):
    with pytest.raises(Exception) as caught:
        outcomes.raise_for_status(reply, **kwargs)
    return caught.value


# --- successes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "word"), [(100, "sent"), (101, "scheduled"), (113, "sent")])
def test_a_success_status_gives_its_word(status, word):
    assert outcomes.raise_for_status({"status": status, "statusText": "ok"}) == word


@pytest.mark.parametrize(("status", "word"), [("100", "sent"), (" 101 ", "scheduled"), ("113", "sent")])
def test_a_success_status_written_as_text_gives_its_word(status, word):
    assert outcomes.raise_for_status({"status": status}) == word


def test_the_rest_api_code_is_read_when_there_is_no_status():
    assert outcomes.raise_for_status({"code": 101}) == "scheduled"


def test_101_scheduled_is_a_success_and_not_an_error():
    # One popular client library treats 101 as a failure; it means "scheduled for later".
    assert outcomes.raise_for_status({"status": 101, "statusText": "Votre envoi est programmé"}) == "scheduled"


def test_113_some_numbers_invalid_is_a_success_because_the_others_were_sent():
    assert outcomes.raise_for_status({"status": 113, "invalidNumbers": ["33600000000"]}) == "sent"


def test_textual_ok_accepts_get_infos_active_account():
    assert outcomes.raise_for_status({"status": "Active Account", "credits": 30}, textual_ok=True) == "ok"


def test_textual_ok_still_reads_a_numeric_error_status():
    error = _raised({"status": 102}, textual_ok=True)
    assert isinstance(error, AuthenticationFailed)


# --- every documented status, and a few that are not ------------------------------------------

# status: (error class, HTTP status, code, field)
TABLE = {
    102: (AuthenticationFailed, 401, "invalid_credentials", None),
    103: (CreditExhausted, 402, "no_credit", None),
    104: (CreditExhausted, 402, "insufficient_credit", None),
    105: (InvalidInput, 422, "empty_feed", "recipients"),
    106: (InvalidInput, 422, "invalid_feed", None),
    107: (InvalidInput, 422, "invalid_feed", "recipients"),
    108: (InvalidInput, 422, "invalid_client_code", "client_reference"),
    109: (InvalidInput, 422, "invalid_feed", None),
    110: (InvalidInput, 422, "empty_message", "message"),
    111: (InvalidInput, 422, "message_too_long", "message"),
    112: (InvalidInput, 422, "invalid_feed", None),
    114: (InvalidInput, 422, "no_valid_number", "recipients"),
    115: (InvalidInput, 422, "invalid_date", "send_at"),
    116: (InvalidInput, 422, "refused_by_allmysms", None),  # in no list AllMySMS publishes
    117: (InvalidInput, 422, "link_too_long", "message"),
    118: (InvalidInput, 422, "unknown_master_account", None),
    119: (InvalidInput, 422, "refused_by_allmysms", None),
    999: (InvalidInput, 422, "refused_by_allmysms", None),
}


def test_the_table_covers_every_status_from_100_to_119():
    assert set(range(100, 120)) <= set(TABLE) | set(outcomes.SUCCESS)


@pytest.mark.parametrize("status", sorted(TABLE))
def test_each_error_status_raises_its_error_with_its_http_status_code_and_field(status):
    kind, http_status, code, field = TABLE[status]
    error = _raised({"status": status, "statusText": ALLMYSMS_TEXT})
    assert type(error) is kind
    assert error.status == http_status
    assert error.code == code
    assert [f.path for f in error.fields] == ([field] if field else [])
    assert error.extra["allmysms_status"] == status


@pytest.mark.parametrize("status", sorted(TABLE))
def test_each_error_carries_allmysms_own_words_after_a_message_a_person_can_act_on(status):
    error = _raised({"status": status, "statusText": ALLMYSMS_TEXT})
    assert error.message.endswith(f" AllMySMS says: {ALLMYSMS_TEXT}")
    assert len(error.message) > len(f" AllMySMS says: {ALLMYSMS_TEXT}") + 10
    for f in error.fields:
        assert f.message == error.message


@pytest.mark.parametrize("status", sorted(TABLE))
def test_each_error_status_given_as_text_is_read_like_the_number(status):
    assert _raised({"status": str(status)}).code == TABLE[status][2]


def test_an_error_without_a_status_text_says_nothing_about_allmysms_words():
    error = _raised({"status": 110})
    assert error.message == "The message is empty."
    assert "AllMySMS says" not in error.message


def test_the_description_field_of_rest_replies_is_used_when_there_is_no_status_text():
    error = _raised({"code": 115, "description": "Date invalide"})
    assert error.message.endswith("AllMySMS says: Date invalide")


def test_an_undocumented_status_on_anything_but_a_send_is_refused_by_allmysms_with_its_text():
    error = _raised({"status": 119, "statusText": "Nouveau cas"})
    assert isinstance(error, InvalidInput)
    assert error.code == "refused_by_allmysms" and error.disposition == "fix_input"
    assert error.message == "AllMySMS refused the request. AllMySMS says: Nouveau cas"


def test_an_undocumented_status_on_a_send_may_have_been_carried_out_so_the_caller_checks_first():
    error = _raised({"status": 119, "statusText": "Nouveau cas"}, sends=True)
    assert isinstance(error, UpstreamFailed)
    assert error.code == "unknown_allmysms_status"
    assert error.message.startswith("AllMySMS answered with status 119, which it does not document")
    assert error.message.endswith("AllMySMS says: Nouveau cas")
    assert error.disposition == "check_before_retry" and not error.retryable


@pytest.mark.parametrize("reply", [{"status": "Erreur"}, {"status": None}, {"status": ""}, {}, {"statusText": "x"}])
def test_a_reply_without_a_numeric_status_is_an_upstream_failure(reply):
    error = _raised(reply)
    assert isinstance(error, UpstreamFailed)
    assert error.status == 502
    assert error.log_detail


def test_a_textual_status_is_an_upstream_failure_unless_textual_ok():
    assert isinstance(_raised({"status": "Active Account"}), UpstreamFailed)


def test_textual_ok_does_not_accept_a_blank_status():
    assert isinstance(_raised({"status": "  "}, textual_ok=True), UpstreamFailed)


# --- dispositions ---------------------------------------------------------------------------


def test_bad_credentials_tell_the_caller_to_fix_the_credentials():
    error = _raised({"status": 102})
    assert error.disposition == "fix_credentials"
    assert not error.retryable
    assert error.as_json()["error"]["code"] == "invalid_credentials"


@pytest.mark.parametrize("status", [103, 104])
def test_missing_credit_tells_the_caller_to_top_up(status):
    error = _raised({"status": status})
    assert error.disposition == "top_up_credit"
    assert not error.retryable


@pytest.mark.parametrize("status", [105, 110, 114, 115, 118])
def test_input_errors_tell_the_caller_to_fix_the_input(status):
    assert _raised({"status": status}).disposition == "fix_input"


# --- credit figures -----------------------------------------------------------------------------


def test_not_enough_credit_reads_the_needed_and_available_credits_from_the_text():
    error = _raised({"status": 104, "statusText": "Not enough credits: 45 needed, 20 available"})
    assert isinstance(error, CreditExhausted)
    assert error.status == 402
    assert error.extra == {"allmysms_status": 104, "credits_needed": 45, "credits_available": 20}
    assert error.as_json()["error"]["credits_needed"] == 45


def test_not_enough_credit_reads_the_figures_from_a_french_text_too():
    error = _raised({"status": "104", "statusText": "Crédits insuffisants : 1500 nécessaires, 30 disponibles"})
    assert (error.extra["credits_needed"], error.extra["credits_available"]) == (1500, 30)


def test_not_enough_credit_without_figures_adds_none():
    error = _raised({"status": 104, "statusText": "Not enough credits"})
    assert error.extra == {"allmysms_status": 104}


def test_no_credit_at_all_means_zero_available():
    error = _raised({"status": 103, "statusText": "No credit left"})
    assert error.code == "no_credit"
    assert error.extra == {"allmysms_status": 103, "credits_available": 0}


# --- field names ----------------------------------------------------------------------------


def test_field_names_rename_the_tables_field_for_an_action_that_calls_it_otherwise():
    error = _raised({"status": 114}, field_names={"recipients": "campaign_id"})
    assert [f.path for f in error.fields] == ["campaign_id"]


def test_field_names_leave_other_fields_alone():
    error = _raised({"status": 115}, field_names={"recipients": "campaign_id"})
    assert [f.path for f in error.fields] == ["send_at"]


def test_status_of_reads_numbers_text_and_nothing():
    assert outcomes.status_of({"status": 100}) == 100
    assert outcomes.status_of({"status": "104"}) == 104
    assert outcomes.status_of({"code": 201}) == 201
    assert outcomes.status_of({"status": "Active Account"}) is None
    assert outcomes.status_of({}) is None
