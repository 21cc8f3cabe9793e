"""Tests for connector.sending.outcomes: every way a call to AllMySMS ends, mapped to a result word or an error."""

import pytest

from connector.errors import AuthenticationFailed, CreditExhausted, InvalidInput, UpstreamFailed
from connector.sending import outcomes

ALLMYSMS_TEXT = "Texte renvoyé par AllMySMS"
SEND, READ = outcomes.SEND_SMS, outcomes.SIMULATE_CAMPAIGN


def _word(reply, method=SEND, http=200):
    return outcomes.settle(outcomes.classify(http, reply, method), method, reply)


def _raised(reply, method=READ, http=200):
    with pytest.raises(Exception) as caught:
        _word(reply, method, http)
    return caught.value


# --- successes --------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "word"), [(100, "sent"), (101, "scheduled"), (113, "sent")])
def test_a_success_status_gives_its_word(status, word):
    assert _word({"status": status, "statusText": "ok"}) == word


@pytest.mark.parametrize(("status", "word"), [("100", "sent"), (" 101 ", "scheduled"), ("113", "sent")])
def test_a_success_status_written_as_text_gives_its_word(status, word):
    assert _word({"status": status}) == word


def test_the_rest_api_code_is_read_when_there_is_no_status():
    assert _word({"code": 101}, outcomes.SEND_VOICE, http=201) == "scheduled"


def test_101_scheduled_is_a_success_and_not_an_error():
    # One popular client library treats 101 as a failure; it means "scheduled for later".
    assert _word({"status": 101, "statusText": "Votre envoi est programmé"}) == "scheduled"


def test_113_some_numbers_invalid_is_a_success_because_the_others_were_sent():
    assert _word({"status": 113, "invalidNumbers": "33600000000"}) == "sent"


def test_get_info_succeeds_with_its_status_in_words():
    assert _word({"status": "Active Account", "credits": 30}, outcomes.GET_INFO) == "ok"


def test_delete_campaign_succeeds_with_the_word_ok():
    assert _word({"status": "OK"}, outcomes.DELETE_CAMPAIGN) == "ok"


@pytest.mark.parametrize(
    "method",
    [
        outcomes.GET_BLACKLIST,
        outcomes.GET_ACKS,
        outcomes.GET_ACK_BY_SMS_ID,
        outcomes.GET_PULLS,
        outcomes.GET_CREDITS_BY_COUNTRY,
    ],
)
def test_the_read_methods_succeed_with_their_data_and_no_status_at_all(method):
    assert _word({"blacklist": [], "acks": [], "mos": []}, method) == "ok"


@pytest.mark.parametrize("method", [outcomes.GET_INFO, outcomes.DELETE_CAMPAIGN, outcomes.GET_BLACKLIST])
def test_a_method_without_a_numeric_status_still_reads_a_numeric_refusal(method):
    assert isinstance(_raised({"status": 102, "statusText": "Bad login"}, method), AuthenticationFailed)


# --- every documented status, and a few that are not ------------------------------------------

# status: (error class, HTTP status, code, field)
TABLE = {
    102: (AuthenticationFailed, 401, "invalid_credentials", None),
    103: (CreditExhausted, 402, "no_credit", None),
    104: (CreditExhausted, 402, "insufficient_credit", None),
    105: (InvalidInput, 422, "empty_feed", "recipients"),
    106: (InvalidInput, 422, "invalid_feed", None),
    107: (InvalidInput, 422, "invalid_feed", "recipients"),
    108: (InvalidInput, 422, "invalid_client_code", None),  # the feed's CLIENT code, not CLIMSGID
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
    error = _raised({"status": 119, "statusText": "Nouveau cas"}, SEND)
    assert isinstance(error, UpstreamFailed)
    assert error.code == "unknown_allmysms_status" and error.extra["allmysms_status"] == 119
    assert error.message.startswith("AllMySMS answered with a status it does not document")
    assert error.message.endswith("AllMySMS says: Nouveau cas")
    assert error.disposition == "check_before_retry" and not error.retryable


@pytest.mark.parametrize(
    "reply", [{"status": "Erreur"}, {"status": None}, {"status": ""}, {}, {"statusText": "x"}, {"status": True}]
)
def test_a_send_answered_without_a_numeric_status_may_have_gone_out(reply):
    error = _raised(reply, SEND)
    assert isinstance(error, UpstreamFailed) and error.status == 502
    assert error.disposition == "check_before_retry"
    assert error.log_detail


@pytest.mark.parametrize("reply", [{"status": "Erreur"}, {}, {"statusText": "x"}])
def test_a_simulation_answered_without_a_numeric_status_is_worth_asking_again(reply):
    error = _raised(reply, READ)
    assert isinstance(error, UpstreamFailed) and error.status == 502
    assert error.disposition == "retry_later"


def test_a_status_in_words_is_not_a_success_for_a_method_that_answers_a_code():
    assert isinstance(_raised({"status": "Active Account"}), UpstreamFailed)


def test_a_blank_status_is_not_a_success_for_a_method_that_answers_a_word():
    assert isinstance(_raised({"status": "  "}, outcomes.GET_INFO), UpstreamFailed)


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
    error = _raised({"status": 114}, outcomes.DELETE_CAMPAIGN)
    assert [f.path for f in error.fields] == ["campaign_id"]


def test_field_names_leave_other_fields_alone():
    error = _raised({"status": 115}, outcomes.DELETE_CAMPAIGN)
    assert [f.path for f in error.fields] == ["send_at"]


def test_status_of_reads_numbers_text_and_nothing():
    assert outcomes.status_of({"status": 100}) == 100
    assert outcomes.status_of({"status": "104"}) == 104
    assert outcomes.status_of({"code": 201}) == 201
    assert outcomes.status_of({"status": "Active Account"}) is None
    assert outcomes.status_of({}) is None


# --- the table of endings ---------------------------------------------------------------------

# (HTTP status, body as read or None when unreadable, method) → the row it ends in
CLASSIFIED = [
    (200, {"status": 100}, SEND, "success"),
    (200, {"status": 104, "statusText": "x"}, SEND, "refused"),
    (200, {"status": 116}, SEND, "status_unknown"),
    (200, {}, SEND, "status_missing"),
    (200, {"status": "OK"}, SEND, "status_unreadable"),
    (200, {"status": "OK"}, outcomes.DELETE_CAMPAIGN, "success"),
    (200, {}, outcomes.DELETE_CAMPAIGN, "status_missing"),
    (200, {"blacklist": []}, outcomes.GET_BLACKLIST, "success"),
    (200, {"status": "Erreur"}, outcomes.GET_BLACKLIST, "status_unreadable"),
    (200, None, SEND, "unreadable"),
    (201, {"code": 100}, outcomes.SEND_VOICE, "success"),
    (400, {"code": 106, "description": "bad"}, outcomes.SEND_VOICE, "refused"),
    (400, None, outcomes.SEND_VOICE, "client_error"),
    (401, None, outcomes.SEND_VOICE, "credentials_refused"),
    (403, {"message": "Forbidden"}, SEND, "credentials_refused"),
    (404, None, SEND, "client_error"),
    (429, None, SEND, "throttled"),
    (302, None, SEND, "redirect"),
    (500, {"status": 100}, SEND, "server_error"),
    (503, None, READ, "server_error"),
]


@pytest.mark.parametrize(("http", "reply", "method", "ending"), CLASSIFIED)
def test_each_answer_is_classified_into_one_row_of_the_table(http, reply, method, ending):
    assert outcomes.classify(http, reply, method) == ending


def test_the_examples_reach_every_row_but_the_transport_ones():
    transport = {"not_connected", "no_answer", "too_large"}
    assert {row for *_, row in CLASSIFIED} == set(outcomes.ENDINGS) - transport


@pytest.mark.parametrize("ending", sorted(outcomes.ENDINGS))
def test_on_a_send_every_ending_that_may_have_sent_asks_to_check_and_every_other_says_nothing_was_sent(ending):
    row = outcomes.ENDINGS[ending]
    if row.acted in ("yes",) or ending == "refused":
        assert row.on_send is None
        return
    with pytest.raises(Exception) as caught:
        outcomes.settle(ending, SEND, {})
    error = caught.value
    if row.acted == "maybe":
        assert error.disposition == "check_before_retry", ending
        assert "twice" in error.message or "MAY" in error.message
    else:
        assert error.disposition in ("retry_later", "fix_credentials"), ending


@pytest.mark.parametrize(
    "ending", sorted(e for e, row in outcomes.ENDINGS.items() if row.acted != "yes" and e != "refused")
)
def test_on_anything_but_a_send_no_ending_asks_to_check_for_a_send(ending):
    with pytest.raises(Exception) as caught:
        outcomes.settle(ending, READ, {})
    assert caught.value.disposition != "check_before_retry"
    assert "sent twice" not in caught.value.message
