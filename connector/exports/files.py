"""What every exporter writes its files with: the one JSON formatting, and the template files under
``templates/`` (real .js and .ts files, parsed by Node and TypeScript as they are) filled with their values.

A template names each value it takes with a comment, ``/*= name */``, which the value replaces:

- in code, the comment is followed by a space and a stand-in literal (``null``, ``''``, ``0``, ``{}`` or
  ``[]``) that keeps the template valid JavaScript or TypeScript; the value replaces both
  (``const VECTOR = /*= vector */ {};``);
- inside a string, or alone on a line (a block of lines, such as a shared fragment), the comment alone.

Values go in as given, never escaped: JSON for data, plain text inside strings. A template is filled with
exactly the values it names: a missing or an unused value is an error, not an empty space.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources

_MARK = re.compile(r"/\*= ([a-z_]+) \*/(?: (?:null|''|0|\{\}|\[\]))?")


def as_json(document) -> str:
    """The one JSON formatting of every export: stable, readable, UTF-8, ending in a newline."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


@cache
def source(path: str) -> str:
    """The text of ``templates/<path>`` (a path with forward slashes), as shipped with the package."""
    return resources.files(__package__).joinpath("templates", *path.split("/")).read_text(encoding="utf-8")


def names(path: str) -> list[str]:
    """The values a template takes, in the order it names them (each once)."""
    return list(dict.fromkeys(match.group(1) for match in _MARK.finditer(source(path))))


def template(path: str, /, **values: str) -> str:
    """``templates/<path>`` with each of its marks replaced by the value of that name."""
    wanted = names(path)
    missing = [name for name in wanted if name not in values]
    unused = [name for name in values if name not in wanted]
    if missing or unused:
        raise ValueError(f"template {path}: values missing {missing}, values it does not take {unused}")
    return _MARK.sub(lambda match: values[match.group(1)], source(path))
