"""The top floor: the `connector` command, serving with gunicorn, and the generated reference."""
