"""Status codes the sandbox answers with, their default texts, and the error that carries them.

Codes 100-118 follow the AllMySMS HTTP API 9.0 table, and the sandbox answers each of them to the
input that provokes it (116 is in no list). Where the table is vague, the sandbox chooses: 109 is an
SMS entry without its MOBILEPHONE tag, and 112 a recipient without a PARAM_n that DYNAMIC announces.
Code 119 is the sandbox's own assumption: the real API does not document what deleteCampaign,
getAcks or getAckBySmsId answer for an id it does not know, so the sandbox answers 119 there.
Keeping every text in this one table means a wording or code learnt later from the real API changes
in one place.
"""

SENT = 100
SCHEDULED = 101
BAD_CREDENTIALS = 102
NO_CREDIT = 103
NOT_ENOUGH_CREDIT = 104
EMPTY_FEED = 105
INVALID_FEED = 106
NO_RECIPIENTS = 107
WRONG_CLIENT_CODE = 108
MISSING_PHONE_TAG = 109
EMPTY_MESSAGE = 110
MESSAGE_TOO_LONG = 111
MISSING_PARAM_TAG = 112
SOME_NUMBERS_INVALID = 113
NO_VALID_NUMBER = 114
INVALID_DATE = 115
LINK_TOO_LONG = 117
UNKNOWN_MASTER_ACCOUNT = 118
NOT_FOUND = 119

STATUS_TEXTS = {
    SENT: "Your messages have been sent",
    SCHEDULED: "Your messages have been scheduled",
    BAD_CREDENTIALS: "No account matches this login and API key",
    NO_CREDIT: "No credit left on this account",
    NOT_ENOUGH_CREDIT: "Not enough credits: {needed} needed, {available} available",
    EMPTY_FEED: "The smsData feed is empty",
    INVALID_FEED: "The smsData feed is invalid",
    NO_RECIPIENTS: "The feed has no SMS recipient",
    WRONG_CLIENT_CODE: "The CLIENT code must be the account's client code in capitals",
    MISSING_PHONE_TAG: "Incomplete feed after the tag SMS: MOBILEPHONE is missing",
    EMPTY_MESSAGE: "The message is empty",
    MESSAGE_TOO_LONG: "The message is longer than 640 characters",
    MISSING_PARAM_TAG: "Incomplete feed after the tag SMS: {tag} is missing",
    SOME_NUMBERS_INVALID: "Some numbers are invalid, the others have been {outcome}",
    NO_VALID_NUMBER: "No valid phone number in the feed",
    INVALID_DATE: "Invalid date: expected a future 'YYYY-MM-DD HH:MM:SS' in French local time",
    LINK_TOO_LONG: "A link in the message is longer than 80 characters",
    UNKNOWN_MASTER_ACCOUNT: "The master account does not exist",
    NOT_FOUND: "Campaign not found or already sent",
}


class ApiError(Exception):
    """An answer other than success: a status code and the text the client sees.

    The text never contains secrets or phone numbers, so it is also safe to log.
    """

    def __init__(self, status, text=None, **details):
        self.status = status
        self.text = text if text is not None else STATUS_TEXTS[status].format(**details)
        super().__init__(f"{status} {self.text}")


def invalid_feed(detail):
    """The 106 error with a short reason, so a client can tell which part of its feed is wrong."""
    return ApiError(INVALID_FEED, f"{STATUS_TEXTS[INVALID_FEED]}: {detail}")
