"""AllMySMS connector: a Flask service between no-code platforms and AllMySMS."""
