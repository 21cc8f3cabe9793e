"""Tests for connector.sending.messages: action input read into send requests, texts checked, times resolved."""

from datetime import UTC, datetime

import pytest

from connector.description.validation import MAX_LISTED
from connector.errors import InvalidInput
from connector.sending import messages, phones, segments
from connector.sending.messages import Recipient, Rules, campaign_ids, send_time, sms_request, voice_request

NOW = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
RULES = Rules()
STOP = "\nSTOP au 36180"


def _refusal(payload, rules=RULES, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        sms_request(payload, rules, NOW, **kwargs)
    return caught.value


def _fields(error: InvalidInput) -> dict[str, str]:
    return {f.path: f.message for f in error.fields}


def _when(value):
    """send_time at NOW in Europe/Paris."""
    return send_time(value, "Europe/Paris", NOW)


# --- plain sends ----------------------------------------------------------------------------


def test_a_plain_send_reads_every_recipient_into_e164():
    request = sms_request(
        {"message": "Your parcel arrives today.", "recipients": ["0611111111", "+33 6 22 22 22 22"]}, RULES, NOW
    )
    assert request.message == "Your parcel arrives today."
    assert request.recipients == (Recipient("+33611111111"), Recipient("+33622222222"))
    assert request.invalid == ()
    assert request.dynamic == 0
    assert request.send_at is None


def test_a_plain_send_carries_its_optional_fields():
    request = sms_request(
        {
            "message": "Hi",
            "recipients": ["0611111111"],
            "sender": "MyShop",
            "campaign_name": "Soldes",
            "flash": True,
            "client_reference": "ref-1",
        },
        RULES,
        NOW,
    )
    assert (request.sender, request.campaign_name, request.flash, request.client_reference) == (
        "MyShop",
        "Soldes",
        True,
        "ref-1",
    )


def test_optional_fields_default_to_empty_and_off():
    request = sms_request({"message": "Hi", "recipients": ["0611111111"]}, RULES, NOW)
    assert (request.sender, request.campaign_name, request.flash, request.client_reference) == ("", "", False, "")


def test_recipients_given_as_one_text_are_split_on_commas_semicolons_and_new_lines():
    request = sms_request(
        {"message": "Hi", "recipients": "0611111111, 0622222222;0633333333\n0644444444,, \n"}, RULES, NOW
    )
    assert [r.e164 for r in request.recipients] == ["+33611111111", "+33622222222", "+33633333333", "+33644444444"]


def test_an_invalid_number_in_a_recipients_text_is_blamed_at_its_position_among_the_numbers():
    error = _refusal({"message": "Hi", "recipients": "0611111111; abc"})
    assert list(_fields(error)) == ["recipients[1]"]


def test_the_same_number_written_twice_reads_as_the_same_e164():
    request = sms_request({"message": "Hi", "recipients": ["0611111111", "+33611111111"]}, RULES, NOW)
    assert {r.e164 for r in request.recipients} == {"+33611111111"}


# --- personalisation ------------------------------------------------------------------------


def test_dynamic_is_the_highest_placeholder_used_and_each_recipient_keeps_that_many_params():
    request = sms_request(
        {
            "message": "Hello #param_1#, your total is #param_3#",
            "recipients": [
                {"phone_number": "0611111111", "params": ["Alice", "x", "12", "ignored"]},
                {"phone_number": "0622222222", "params": ["Bob", "y", "7"]},
            ],
        },
        RULES,
        NOW,
    )
    assert request.dynamic == 3
    assert request.recipients == (
        Recipient("+33611111111", ("Alice", "x", "12")),
        Recipient("+33622222222", ("Bob", "y", "7")),
    )


def test_numbers_given_as_params_become_text_and_whole_floats_lose_their_decimal_point():
    request = sms_request(
        {
            "message": "#param_1# #param_2# #param_3# #param_4#",
            "recipients": [{"phone_number": "0611111111", "params": [12.0, 7, 3.5, -0.0]}],
        },
        RULES,
        NOW,
    )
    assert request.recipients[0].params == ("12", "7", "3.5", "0")


def test_a_recipient_with_fewer_params_than_the_message_uses_is_blamed_at_its_params():
    error = _refusal(
        {
            "message": "Hello #param_1#, see you at #param_2#",
            "recipients": [
                {"phone_number": "0611111111", "params": ["Alice", "10:00"]},
                {"phone_number": "0622222222", "params": ["Bob"]},
            ],
        }
    )
    fields = _fields(error)
    assert list(fields) == ["recipients[1].params"]
    assert "#param_2#" in fields["recipients[1].params"]
    assert "1 value" in fields["recipients[1].params"]


def test_a_plain_number_in_a_personalised_send_is_blamed_for_its_missing_params():
    error = _refusal(
        {
            "message": "Hello #param_1#",
            "recipients": [{"phone_number": "0611111111", "params": ["Alice"]}, "0622222222"],
        }
    )
    assert list(_fields(error)) == ["recipients[1].params"]


def test_params_without_any_placeholder_in_the_message_are_an_error_on_the_message():
    error = _refusal({"message": "Hello", "recipients": [{"phone_number": "0611111111", "params": ["Alice"]}]})
    fields = _fields(error)
    assert list(fields) == ["message"]
    assert "#param_1#" in fields["message"]


def test_placeholder_zero_is_refused():
    error = _refusal({"message": "Hi #param_0#", "recipients": [{"phone_number": "0611111111", "params": ["a"]}]})
    assert "#param_1#" in _fields(error)["message"]


def test_a_forbidden_character_in_a_param_is_blamed_at_that_param_with_its_position():
    error = _refusal(
        {
            "message": "Hi #param_1# #param_2#",
            "recipients": [{"phone_number": "0611111111", "params": ["ok", "ab\x00"]}],
        }
    )
    fields = _fields(error)
    assert list(fields) == ["recipients[0].params[1]"]
    assert "U+0000" in fields["recipients[0].params[1]"]
    assert "position 3" in fields["recipients[0].params[1]"]


def test_the_text_analysis_is_of_the_template_with_its_placeholders():
    message = "Bonjour #param_1#"
    request = sms_request(
        {"message": message, "recipients": [{"phone_number": "0611111111", "params": ["Zoë"]}]}, RULES, NOW
    )
    assert request.text == segments.analyse(message)
    assert request.text.characters == len(message)
    assert request.text.encoding == "GSM-7"


def test_parts_max_counts_the_recipient_whose_params_push_the_message_to_two_parts():
    message = "x" * 140 + " #param_1#"  # 150 characters as written
    request = sms_request(
        {
            "message": message,
            "recipients": [
                {"phone_number": "0611111111", "params": ["Al"]},  # 143 characters: one part
                {"phone_number": "0622222222", "params": ["y" * 30]},  # 171 characters: two parts
            ],
        },
        RULES,
        NOW,
    )
    assert request.text.parts == 1
    assert request.parts_max == 2


def test_parts_max_counts_a_param_that_switches_one_recipient_to_ucs2():
    message = "x" * 60 + " #param_1#"
    request = sms_request(
        {
            "message": message,
            "recipients": [
                {"phone_number": "0611111111", "params": ["Al"]},
                {"phone_number": "0622222222", "params": ["Zoé \U0001f600 " + "z" * 10]},
            ],
        },
        RULES,
        NOW,
    )
    assert request.text.encoding == "GSM-7"
    assert request.parts_max == 2


def test_parts_max_of_a_plain_message_is_its_own_part_count():
    request = sms_request({"message": "a" * 161, "recipients": ["0611111111"]}, RULES, NOW)
    assert request.text.parts == request.parts_max == 2


def test_render_puts_each_param_in_its_placeholder():
    assert messages.render("#param_2#, #param_1#! #param_2#", ("a", "b")) == "b, a! b"


# --- the STOP mention -----------------------------------------------------------------------


def test_add_stop_mention_appends_stop_au_36180_on_a_new_line():
    request = sms_request(
        {"message": "Soldes -20%", "recipients": ["0611111111"], "add_stop_mention": True}, RULES, NOW
    )
    assert request.message == "Soldes -20%" + STOP


@pytest.mark.parametrize("message", ["Soldes STOP au 36180", "Soldes. stop AU 36180 pour ne plus recevoir"])
def test_add_stop_mention_does_not_repeat_a_mention_already_there_whatever_its_case(message):
    request = sms_request({"message": message, "recipients": ["0611111111"], "add_stop_mention": True}, RULES, NOW)
    assert request.message == message


def test_without_add_stop_mention_the_message_is_left_alone():
    request = sms_request({"message": "Hi", "recipients": ["0611111111"], "add_stop_mention": False}, RULES, NOW)
    assert request.message == "Hi"


def test_the_stop_mention_comes_from_the_rules():
    rules = Rules(stop_mention="STOP 12345")
    request = sms_request({"message": "Hi", "recipients": ["0611111111"], "add_stop_mention": True}, rules, NOW)
    assert request.message == "Hi\nSTOP 12345"


def test_a_message_that_reaches_exactly_640_characters_with_the_stop_mention_is_accepted():
    message = "x" * (640 - len(STOP))
    request = sms_request({"message": message, "recipients": ["0611111111"], "add_stop_mention": True}, RULES, NOW)
    assert len(request.message) == 640


def test_the_640_character_limit_applies_after_the_stop_mention_is_appended():
    message = "x" * (641 - len(STOP))
    error = _refusal({"message": message, "recipients": ["0611111111"], "add_stop_mention": True})
    fields = _fields(error)
    assert list(fields) == ["message"]
    assert "641" in fields["message"] and "640" in fields["message"]


# --- forbidden characters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "position"),
    [
        ("ab\x07c", "U+0007", 3),
        ("\x00", "U+0000", 1),
        ("a\x1bb", "U+001B", 2),
        ("x\x7f", "U+007F", 2),
        ("ok \ud800 lone", "U+D800", 4),
        ("ok \udfff", "U+DFFF", 4),
        ("a\ufffe", "U+FFFE", 2),
    ],
)
def test_a_forbidden_character_in_the_message_is_refused_naming_it_and_its_position(message, code, position):
    fields = _fields(_refusal({"message": message, "recipients": ["0611111111"]}))
    assert list(fields) == ["message"]
    assert code in fields["message"]
    assert f"position {position}" in fields["message"]


@pytest.mark.parametrize("campaign_name", ["Soldes\x01", "Soldes\x00", "Soldes \ud800"])
def test_a_forbidden_character_in_the_campaign_name_is_refused_at_campaign_name(campaign_name):
    # CAMPAIGN_NAME goes into the feed: an XML feed cannot carry these characters.
    error = _refusal({"message": "Hi", "recipients": ["0611111111"], "campaign_name": campaign_name})
    assert list(_fields(error)) == ["campaign_name"]
    with pytest.raises(InvalidInput) as caught:
        voice_request({"recipients": ["0611111111"], "text": "Bonjour", "campaign_name": campaign_name}, RULES, NOW)
    assert list(_fields(caught.value)) == ["campaign_name"]


@pytest.mark.parametrize("message", ["tab\there", "line\nbreak\r\nwindows", "emoji \U0001f600", "€ [x]"])
def test_tabs_new_lines_and_characters_outside_the_bmp_are_allowed(message):
    assert sms_request({"message": message, "recipients": ["0611111111"]}, RULES, NOW).message == message


# --- invalid numbers ------------------------------------------------------------------------


def test_under_reject_every_invalid_number_is_listed_at_its_path_and_nothing_is_built():
    error = _refusal(
        {"message": "Hi", "recipients": ["0611111111", "abc", "0622222222", "0612"], "invalid_numbers": "reject"}
    )
    fields = _fields(error)
    assert list(fields) == ["recipients[1]", "recipients[3]"]
    assert "'abc' is not a phone number" in fields["recipients[1]"]
    assert "'0612' is too short" in fields["recipients[3]"]
    assert "skip" in fields["recipients[1]"]
    assert error.message.startswith("2 problems with the input")


def test_reject_is_the_default_for_invalid_numbers():
    error = _refusal({"message": "Hi", "recipients": ["0611111111", "abc"]})
    assert list(_fields(error)) == ["recipients[1]"]


def test_an_invalid_number_in_an_object_recipient_is_blamed_at_that_recipient():
    error = _refusal({"message": "Hi", "recipients": [{"phone_number": "0611111111"}, {"phone_number": "123"}]})
    assert list(_fields(error)) == ["recipients[1]"]


def test_under_skip_the_valid_numbers_are_kept_and_the_invalid_ones_listed():
    request = sms_request(
        {"message": "Hi", "recipients": ["0611111111", "abc", "0622222222", "0612"], "invalid_numbers": "skip"},
        RULES,
        NOW,
    )
    assert [r.e164 for r in request.recipients] == ["+33611111111", "+33622222222"]
    assert [(n.path, n.input, n.reason) for n in request.invalid] == [
        ("recipients[1]", "abc", phones.parse("abc", "FR")[1]),
        ("recipients[3]", "0612", "too short to be a phone number"),
    ]
    assert [n.as_json() for n in request.invalid] == [
        {"input": "abc", "reason": phones.parse("abc", "FR")[1]},
        {"input": "0612", "reason": "too short to be a phone number"},
    ]


def test_under_skip_a_send_without_any_valid_number_is_refused():
    error = _refusal({"message": "Hi", "recipients": ["abc", "0612"], "invalid_numbers": "skip"})
    fields = _fields(error)
    assert list(fields) == ["recipients[0]", "recipients[1]"]
    # Suggesting skip makes no sense when skip is already asked for and nothing would be left.
    assert "skip" not in fields["recipients[0]"]


def test_ten_thousand_recipients_with_150_invalid_list_the_first_100_and_count_the_other_50():
    numbers = [f"06{i:08d}" for i in range(10_000)]
    bad = list(range(0, 10_000, 66))[:150]
    for i in bad:
        numbers[i] = "0612"
    error = _refusal({"message": "Hi", "recipients": numbers, "invalid_numbers": "reject"})
    assert len(error.fields) == MAX_LISTED == 100
    assert error.extra == {"more_fields": 50}
    assert [f.path for f in error.fields] == [f"recipients[{i}]" for i in bad[:100]]
    assert error.message.startswith("150 problems with the input")
    assert error.as_json()["error"]["more_fields"] == 50


def test_more_recipients_than_the_rules_allow_is_refused_before_reading_them():
    error = _refusal({"message": "Hi", "recipients": ["0611111111", "0622222222", "abc"]}, Rules(max_recipients=2))
    fields = _fields(error)
    assert list(fields) == ["recipients"]
    assert "3 recipients" in fields["recipients"] and "2" in fields["recipients"]


def test_exactly_max_recipients_is_accepted():
    request = sms_request({"message": "Hi", "recipients": ["0611111111", "0622222222"]}, Rules(max_recipients=2), NOW)
    assert len(request.recipients) == 2


def test_an_empty_recipients_text_is_refused():
    assert list(_fields(_refusal({"message": "Hi", "recipients": " ; , "}))) == ["recipients"]


def test_every_problem_is_reported_at_once():
    error = _refusal({"message": "bad\x01", "recipients": ["abc"]})
    assert set(_fields(error)) == {"message", "recipients[0]"}


# --- send_time --------------------------------------------------------------------------------


def test_a_naive_winter_time_is_read_in_paris_at_utc_plus_one():
    when, problems = _when("2030-12-01 09:30")
    assert problems == []
    assert when.utc == datetime(2030, 12, 1, 8, 30, tzinfo=UTC)
    assert when.utc_text == "2030-12-01T08:30:00Z"
    assert when.local_text == "2030-12-01 09:30:00"


def test_a_naive_summer_time_is_read_in_paris_at_utc_plus_two():
    when, problems = _when("2030-07-01T09:30:00")
    assert problems == []
    assert when.utc_text == "2030-07-01T07:30:00Z"
    assert when.local_text == "2030-07-01 09:30:00"


def test_a_time_with_an_offset_is_converted_and_given_back_in_paris_wall_time():
    when, problems = _when("2030-07-01T09:30:00+05:30")
    assert problems == []
    assert when.utc_text == "2030-07-01T04:00:00Z"
    assert when.local_text == "2030-07-01 06:00:00"


def test_a_utc_time_written_with_z_is_given_back_in_paris_wall_time():
    when, problems = _when("2030-12-01T08:30:00Z")
    assert problems == []
    assert when.utc_text == "2030-12-01T08:30:00Z"
    assert when.local_text == "2030-12-01 09:30:00"


def test_the_local_time_is_naive_and_the_utc_time_is_aware():
    when, _ = _when("2030-12-01T08:30:00Z")
    assert when.local.tzinfo is None
    assert when.utc.utcoffset().total_seconds() == 0


def test_fractions_of_a_second_are_dropped():
    when, _ = _when("2030-12-01T09:30:00.123456+01:00")
    assert when.utc == datetime(2030, 12, 1, 8, 30, tzinfo=UTC)


def test_surrounding_spaces_are_ignored():
    when, problems = _when("  2030-12-01 09:30  ")
    assert problems == [] and when.local_text == "2030-12-01 09:30:00"


@pytest.mark.parametrize("value", ["2029-12-01 09:30", "2030-01-15T12:00:00Z", "2030-01-15 13:00"])
def test_a_time_that_is_not_in_the_future_is_refused(value):
    when, problems = _when(value)
    assert when is None
    assert [p.path for p in problems] == ["send_at"]
    assert "past" in problems[0].message


def test_a_time_one_second_in_the_future_is_accepted():
    when, problems = _when("2030-01-15T12:00:01Z")
    assert problems == [] and when.utc_text == "2030-01-15T12:00:01Z"


@pytest.mark.parametrize(
    "value", ["tomorrow", "", "2030-13-01 09:30", "2030-12-01 9:30", "01/12/2030 09:30", "2030-12-01T"]
)
def test_garbage_is_refused_with_an_example_of_what_works(value):
    when, problems = _when(value)
    assert when is None
    assert [p.path for p in problems] == ["send_at"]
    assert "ISO 8601" in problems[0].message


@pytest.mark.parametrize("value", ["2030-12-01", "20301201"])
def test_a_date_without_a_time_is_refused(value):
    when, problems = _when(value)
    assert when is None
    assert [p.path for p in problems] == ["send_at"]
    assert "time as well as a date" in problems[0].message


def test_a_naive_time_skipped_when_paris_clocks_go_forward_is_refused_as_not_existing():
    when, problems = _when("2030-03-31 02:30")
    assert when is None
    assert [p.path for p in problems] == ["send_at"]
    assert "does not exist" in problems[0].message
    assert "Europe/Paris" in problems[0].message


def test_the_same_instant_given_with_an_offset_is_accepted():
    when, problems = _when("2030-03-31T02:30:00+01:00")
    assert problems == []
    assert when.utc_text == "2030-03-31T01:30:00Z"
    assert when.local_text == "2030-03-31 03:30:00"


def test_the_hour_after_clocks_go_forward_exists():
    when, problems = _when("2030-03-31 03:30")
    assert problems == [] and when.utc_text == "2030-03-31T01:30:00Z"


def test_a_naive_time_repeated_when_clocks_go_back_is_accepted_in_paris_wall_time():
    when, problems = _when("2030-10-27 02:30")
    assert problems == []
    assert when.local_text == "2030-10-27 02:30:00"
    assert when.utc_text in ("2030-10-27T00:30:00Z", "2030-10-27T01:30:00Z")


def test_the_zone_is_a_parameter():
    when, _ = send_time("2030-12-01 09:30", "America/New_York", NOW)
    assert when.utc_text == "2030-12-01T14:30:00Z"
    assert when.local_text == "2030-12-01 09:30:00"


def test_a_scheduled_request_carries_its_send_time():
    request = sms_request(
        {"message": "Hi", "recipients": ["0611111111"], "send_at": "2030-12-01 09:30"}, RULES, NOW, schedule=True
    )
    assert request.send_at.utc_text == "2030-12-01T08:30:00Z"


def test_a_request_not_scheduled_ignores_send_at():
    request = sms_request({"message": "Hi", "recipients": ["0611111111"], "send_at": "2000-01-01 00:00"}, RULES, NOW)
    assert request.send_at is None


def test_a_scheduled_request_with_a_past_time_is_refused_at_send_at():
    error = _refusal({"message": "Hi", "recipients": ["0611111111"], "send_at": "2020-01-01 10:00"}, schedule=True)
    assert list(_fields(error)) == ["send_at"]


# --- voice_request ----------------------------------------------------------------------------


def test_a_voice_request_from_an_audio_file_reads_its_sender_and_time():
    request = voice_request(
        {
            "recipients": ["0611111111"],
            "audio_url": "https://example.com/a.mp3",
            "sender": "01 23 45 67 89",
            "campaign_name": "Relance",
            "send_at": "2030-12-01 09:30",
        },
        RULES,
        NOW,
    )
    assert request.recipients == (Recipient("+33611111111"),)
    assert request.audio_url == "https://example.com/a.mp3"
    assert request.text == ""
    assert request.sender == "+33123456789"
    assert request.campaign_name == "Relance"
    assert request.send_at.local_text == "2030-12-01 09:30:00"


def test_a_voice_request_from_a_text_has_no_audio_file_and_no_sender_by_default():
    request = voice_request({"recipients": "0611111111; 0622222222", "text": "Bonjour"}, RULES, NOW)
    assert [r.e164 for r in request.recipients] == ["+33611111111", "+33622222222"]
    assert (request.audio_url, request.text, request.sender, request.send_at) == ("", "Bonjour", "", None)


def test_personalised_voice_recipients_are_refused():
    with pytest.raises(InvalidInput) as caught:
        voice_request({"recipients": [{"phone_number": "0611111111", "params": ["Al"]}], "text": "Bonjour"}, RULES, NOW)
    assert list(_fields(caught.value)) == ["recipients"]


def test_an_invalid_voice_sender_is_blamed_at_sender():
    with pytest.raises(InvalidInput) as caught:
        voice_request({"recipients": ["0611111111"], "text": "Bonjour", "sender": "12"}, RULES, NOW)
    fields = _fields(caught.value)
    assert list(fields) == ["sender"]
    assert "too short" in fields["sender"]


def test_a_forbidden_character_in_the_voice_text_is_blamed_at_text():
    with pytest.raises(InvalidInput) as caught:
        voice_request({"recipients": ["0611111111"], "text": "Bon\x01jour"}, RULES, NOW)
    assert "position 4" in _fields(caught.value)["text"]


def test_voice_invalid_numbers_follow_the_same_skip_rule_as_sms():
    request = voice_request(
        {"recipients": ["0611111111", "abc"], "text": "Bonjour", "invalid_numbers": "skip"}, RULES, NOW
    )
    assert [n.input for n in request.invalid] == ["abc"]
    with pytest.raises(InvalidInput) as caught:
        voice_request({"recipients": ["0611111111", "abc"], "text": "Bonjour"}, RULES, NOW)
    assert list(_fields(caught.value)) == ["recipients[1]"]


def test_a_voice_request_with_a_past_time_is_refused_at_send_at():
    with pytest.raises(InvalidInput) as caught:
        voice_request({"recipients": ["0611111111"], "text": "Bonjour", "send_at": "2020-01-01 10:00"}, RULES, NOW)
    assert list(_fields(caught.value)) == ["send_at"]


# --- campaign_ids -----------------------------------------------------------------------------


def test_campaign_ids_from_a_list_become_text():
    assert campaign_ids(["5012875", 5012876]) == ["5012875", "5012876"]


def test_campaign_ids_from_one_text_are_split_on_commas_semicolons_and_new_lines():
    assert campaign_ids("5012875, 5012876;5012877\n5012878") == ["5012875", "5012876", "5012877", "5012878"]


def test_campaign_ids_are_deduplicated_in_their_first_order():
    assert campaign_ids("3, 1, 3, 2, 1") == ["3", "1", "2"]
    assert campaign_ids([7, "7", " 7 "]) == ["7"]


@pytest.mark.parametrize("value", ["abc def", "5012875, 50 12", ["ok", "a/b"], ["ok", ""], "x" * 65])
def test_something_that_is_not_a_campaign_id_is_refused_naming_it(value):
    with pytest.raises(InvalidInput) as caught:
        campaign_ids(value)
    assert [f.path for f in caught.value.fields] == ["campaign_id"]
    assert "is not a campaign ID" in caught.value.fields[0].message


@pytest.mark.parametrize("value", ["", " , ; ", []])
def test_no_campaign_id_at_all_is_refused(value):
    with pytest.raises(InvalidInput) as caught:
        campaign_ids(value)
    assert caught.value.fields[0].message == "Give the campaign ID returned by the send."


# --- the edges of the calendar --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, direction",
    [
        ("9999-12-31T23:59:59+00:00", "ahead"),
        ("9999-12-31T23:30:00-14:00", "ahead"),
        ("9999-12-31T23:59:59Z", "ahead"),
        ("0001-01-01T00:00:00", "back"),
        ("0001-01-01T00:00:00+23:59", "back"),
    ],
)
def test_a_time_with_no_utc_or_paris_equivalent_in_the_calendar_is_refused_at_send_at(value, direction):
    when, problems = _when(value)
    assert when is None
    reason = f"{value} is too far {direction} to be sent at: give a time in the coming years, e.g. 2026-12-01 09:30."
    assert [(p.path, p.message) for p in problems] == [("send_at", reason)]


def test_a_scheduled_sms_or_voice_message_at_the_end_of_the_calendar_is_refused_naming_send_at():
    payload = {"message": "Hi", "recipients": ["0611111111"], "send_at": "9999-12-31T23:59:59+00:00"}
    assert list(_fields(_refusal(payload, schedule=True))) == ["send_at"]
    with pytest.raises(InvalidInput) as caught:
        voice_request(
            {"recipients": ["0611111111"], "text": "Bonjour", "send_at": "9999-12-31T23:59:59+00:00"}, RULES, NOW
        )
    assert list(_fields(caught.value)) == ["send_at"]


# --- lone surrogates anywhere in an input ---------------------------------------------------------------

SURROGATE_REASON = (
    "U+D800 at position {}, half of a UTF-16 pair without its other half: it is not a character. Remove it."
)


def test_a_lone_surrogate_is_blamed_at_each_field_holding_one_whatever_its_depth():
    document = {
        "message": "Hi",
        "sender": "Shop\ud800",
        "audio_url": "https://example.com/\udfff.mp3",
        "recipients": [{"phone_number": "0611111111", "params": ["ok", "\ud800"]}],
        "flash": True,
        "n": 1.5,
    }
    assert [(p.path, p.message) for p in messages.lone_surrogates(document)] == [
        ("sender", "Contains " + SURROGATE_REASON.format(5)),
        ("audio_url", "Contains " + SURROGATE_REASON.format(21).replace("D800", "DFFF")),
        ("recipients[0].params[1]", "Contains " + SURROGATE_REASON.format(1)),
    ]


def test_a_lone_surrogate_in_a_field_name_is_blamed_at_that_name_shown_with_a_replacement_character():
    (problem,) = messages.lone_surrogates({"campaign\ud800name": "x"})
    assert problem.path == "campaign\ufffdname"
    assert problem.message == "The field's name contains " + SURROGATE_REASON.format(9)
    problem.path.encode("utf-8")  # an answer can carry it


@pytest.mark.parametrize(
    "document", [{"message": "Salut 👋🏽 שלום €", "recipients": ["0611111111"]}, "text", 1, None, [], {}]
)
def test_text_without_lone_surrogates_has_no_problem(document):
    assert messages.lone_surrogates(document) == []


def test_a_document_nested_as_deep_as_json_allows_is_searched_without_exhausting_the_stack():
    document = innermost = []
    for _ in range(5_000):  # more than the recursion limit: a recursive search would fail
        innermost.append([])
        innermost = innermost[0]
    innermost.append("\ud800")
    (problem,) = messages.lone_surrogates(document)
    assert problem.path == "[0]" * 5_001
