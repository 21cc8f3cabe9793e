"""A test tool: an evaluator for the subset of Make's IML (the `{{...}}` expressions of a custom app) that our
Make export uses, following Make's developer documentation ("JavaScript in Make" / IML page, and the built-in
functions of Make's help).

What it follows: a string that is exactly one `{{expr}}` gives the expression's value as it is (an object stays
an object); text mixed with expressions gives text. Operators as documented: + - * / %, == (also = and ===)
and != (also !==) are strict, < <= > >=, && || !. Strings in ' or ". Dot paths, `back ticks` for odd
property names, [n] counting from 1 and [-1] for the last item. A missing property is undefined (None here),
never an error, as in a Make mapping. Functions: only the ones listed in FUNCTIONS.

What it refuses: anything else. An expression this module cannot parse, or a function it does not know,
raises IMLError: the export must generate nothing we cannot check.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

__all__ = ["IMLError", "FUNCTIONS", "parse", "evaluate", "render", "render_all", "expressions"]


class IMLError(ValueError):
    """An expression outside the subset we can check."""


_TOKEN = re.compile(
    r"""
    \s*(?:
      (?P<number>\d+(?:\.\d+)?)
    | (?P<string>'[^']*'|"[^"]*")
    | (?P<tick>`[^`]*`)
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
    | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||[-+*/%<>!=().,\[\]])
    )""",
    re.VERBOSE,
)

#: Binding power of each binary operator (higher binds tighter), as in JavaScript.
_BINARY = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "=": 3,
    "===": 3,
    "!=": 3,
    "!==": 3,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}
_LITERALS = {"true": True, "false": False, "null": None}
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


def _tokens(source: str) -> list[tuple[str, str]]:
    found, position, source = [], 0, source.rstrip()
    while position < len(source):
        match = _TOKEN.match(source, position)
        if not match or match.end() == position:
            raise IMLError(f"cannot read {source[position:]!r} in {source!r}")
        kind = match.lastgroup
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


class _Parser:
    """Pratt parser to a small tree of tuples: ('lit', v), ('var', name), ('get', obj, key), ('index', obj, e),
    ('call', name, args), ('not', e), ('neg', e), ('bin', op, left, right)."""

    def __init__(self, source: str):
        self.source = source
        self.tokens = _tokens(source)
        self.at = 0

    def parse(self):
        if not self.tokens:
            raise IMLError("an empty expression")
        tree = self._expression(0)
        if self.at != len(self.tokens):
            raise IMLError(f"unexpected {self.tokens[self.at][1]!r} in {self.source!r}")
        return tree

    def _peek(self):
        return self.tokens[self.at] if self.at < len(self.tokens) else (None, None)

    def _take(self, value: str | None = None):
        kind, text = self._peek()
        if kind is None or (value is not None and text != value):
            raise IMLError(f"expected {value or 'more'} in {self.source!r}")
        self.at += 1
        return kind, text

    def _expression(self, floor: int):
        left = self._unary()
        while True:
            kind, text = self._peek()
            power = _BINARY.get(text) if kind == "op" else None
            if power is None or power <= floor:
                return left
            self.at += 1
            left = ("bin", text, left, self._expression(power))

    def _unary(self):
        kind, text = self._peek()
        if kind == "op" and text in {"!", "-"}:
            self.at += 1
            return ("not" if text == "!" else "neg", self._unary())
        return self._postfix(self._primary())

    def _primary(self):
        kind, text = self._take()
        if kind == "number":
            return ("lit", float(text) if "." in text else int(text))
        if kind == "string":
            return ("lit", text[1:-1])
        if kind == "op" and text == "(":
            inner = self._expression(0)
            self._take(")")
            return inner
        if kind == "name":
            if text in _LITERALS:
                return ("lit", _LITERALS[text])
            if self._peek() == ("op", "("):
                self.at += 1
                args = []
                if self._peek() != ("op", ")"):
                    args.append(self._expression(0))
                    while self._peek() == ("op", ","):
                        self.at += 1
                        args.append(self._expression(0))
                self._take(")")
                if text not in FUNCTIONS:
                    raise IMLError(f"unknown function {text}() in {self.source!r}")
                return ("call", text, args)
            return ("var", text)
        raise IMLError(f"unexpected {text!r} in {self.source!r}")

    def _postfix(self, tree):
        while True:
            kind, text = self._peek()
            if (kind, text) == ("op", "."):
                self.at += 1
                kind, text = self._take()
                if kind == "name":
                    tree = ("get", tree, text)
                elif kind == "tick":
                    tree = ("get", tree, text[1:-1])
                else:
                    raise IMLError(f"expected a property name after '.' in {self.source!r}")
            elif (kind, text) == ("op", "["):
                self.at += 1
                index = self._expression(0)
                self._take("]")
                tree = ("index", tree, index)
            else:
                return tree


def _truthy(value) -> bool:
    return value not in (None, False, 0, "") and not (isinstance(value, float) and value != value)


def _text(value) -> str:
    """A value inside text, as JavaScript would print it: undefined and null print nothing in a Make mapping."""
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def _same(left, right) -> bool:
    """Strict equality: no conversion between types (1 is not '1'), but 1 is 1.0 as in JavaScript."""
    numbers = (int, float)
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, numbers) and isinstance(right, numbers):
        return left == right
    return type(left) is type(right) and left == right


def _number(value):
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if value is None:
        return 0
    try:
        return float(value) if "." in str(value) else int(value)
    except ValueError:
        return float("nan")


def _arith(op: str, left, right):
    if op == "+":
        if (
            isinstance(left, str)
            or isinstance(right, str)
            or isinstance(left, (dict, list))
            or isinstance(right, (dict, list))
        ):
            return _text(left) + _text(right)
        return _number(left) + _number(right)
    left, right = _number(left), _number(right)
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if right == 0:
        return float("nan") if left == 0 or op == "%" else float("inf") * (1 if left > 0 else -1)
    return left / right if op == "/" else left - right * int(left / right)


def _compare(op: str, left, right) -> bool:
    if not (isinstance(left, str) and isinstance(right, str)):
        left, right = _number(left), _number(right)
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


def _property(container, key):
    if isinstance(container, dict):
        return container.get(key)
    return None


def _item(container, index):
    """IML counts items from 1, and -1 is the last."""
    if isinstance(container, dict):
        return container.get(index if isinstance(index, str) else _text(index))
    if not isinstance(container, list) or not isinstance(index, int) or isinstance(index, bool) or index == 0:
        return None
    position = index - 1 if index > 0 else len(container) + index
    return container[position] if 0 <= position < len(container) else None


def _base64(value) -> str:
    return base64.b64encode(_text(value).encode("utf-8")).decode("ascii")


def _omit(collection, *keys):
    if not isinstance(collection, dict):
        return collection
    return {k: v for k, v in collection.items() if k not in keys}


def _get(container, path):
    """get(object, key): the key may be a dot path (Make's help: "raw variable names ... dot notation")."""
    value = container
    for part in _text(path).split("."):
        value = (
            _item(value, int(part))
            if isinstance(value, list) and part.lstrip("-").isdigit()
            else _property(value, part)
        )
    return value


#: The functions we can check. `if` and `ifempty` are special forms (only the chosen branch is evaluated).
FUNCTIONS = {
    "if": None,
    "ifempty": None,
    "base64": _base64,
    "omit": _omit,
    "get": _get,
}


def _eval(tree, context: dict):
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "var":
        return context.get(tree[1])
    if kind == "get":
        return _property(_eval(tree[1], context), tree[2])
    if kind == "index":
        return _item(_eval(tree[1], context), _eval(tree[2], context))
    if kind == "not":
        return not _truthy(_eval(tree[1], context))
    if kind == "neg":
        return -_number(_eval(tree[1], context))
    if kind == "call":
        name, args = tree[1], tree[2]
        if name == "if":
            if len(args) not in (2, 3):
                raise IMLError("if() takes a condition and one or two values")
            chosen = args[1] if _truthy(_eval(args[0], context)) else (args[2] if len(args) == 3 else None)
            return None if chosen is None else _eval(chosen, context)
        if name == "ifempty":
            if len(args) != 2:
                raise IMLError("ifempty() takes two values")
            first = _eval(args[0], context)
            return _eval(args[1], context) if first is None or first == "" else first
        return FUNCTIONS[name](*(_eval(a, context) for a in args))
    op, left_tree, right_tree = tree[1], tree[2], tree[3]
    left = _eval(left_tree, context)
    if op == "&&":
        return _eval(right_tree, context) if _truthy(left) else left
    if op == "||":
        return left if _truthy(left) else _eval(right_tree, context)
    right = _eval(right_tree, context)
    if op in {"==", "=", "==="}:
        return _same(left, right)
    if op in {"!=", "!=="}:
        return not _same(left, right)
    if op in {"<", "<=", ">", ">="}:
        return _compare(op, left, right)
    return _arith(op, left, right)


def parse(expression: str):
    """The tree of one expression (the text between the braces); IMLError if outside our subset."""
    return _Parser(expression).parse()


def evaluate(expression: str, context: dict) -> Any:
    return _eval(parse(expression), context)


def render(template: str, context: dict) -> Any:
    """A string of a Make app: exactly one `{{expr}}` keeps the value's type; anything else is text."""
    whole = _EXPRESSION.fullmatch(template)
    if whole:
        return evaluate(whole.group(1), context)
    if "{{" in _EXPRESSION.sub("", template) or "}}" in _EXPRESSION.sub("", template):
        raise IMLError(f"unbalanced braces in {template!r}")
    return _EXPRESSION.sub(lambda m: _text(evaluate(m.group(1), context)), template)


def render_all(value, context: dict):
    """Every string of a Make app structure (a request: url, headers, qs, body...) rendered."""
    if isinstance(value, str):
        return render(value, context)
    if isinstance(value, dict):
        return {k: render_all(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_all(v, context) for v in value]
    return value


def expressions(value) -> list[str]:
    """Every `{{...}}` expression in a structure (the text between the braces)."""
    if isinstance(value, str):
        return _EXPRESSION.findall(value)
    if isinstance(value, dict):
        return [e for v in value.values() for e in expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in expressions(v)]
    return []
