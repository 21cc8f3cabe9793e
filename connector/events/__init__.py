"""The event path: callbacks read into events (pure), signatures, where events may go, the transport and
the delivery worker."""
