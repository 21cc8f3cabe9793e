"""The action path: input read into requests (pure), AllMySMS feeds and the one reply table, the one
AllMySMS client, idempotency and limits per caller."""
