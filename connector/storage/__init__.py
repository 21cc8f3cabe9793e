"""Persistence: the tables, the engine and its write gate, the schema's migrations, and what keeps
accepted data through a database outage (the journal)."""
