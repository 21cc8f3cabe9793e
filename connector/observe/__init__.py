"""What every layer uses to be seen: logs (all redaction in one place), metrics, process identities."""
