"""Persistence: the tables, the database and its write gate, one repository per aggregate composed into the
store, the schema's migrations, and what keeps accepted data through a database outage (the journal)."""
