"""Repair the JSON ManyChat breaks when a variable has no value.

ManyChat sends an empty variable as its template text. Outside a string that is not JSON
(`"message_content": {{last_input_text|to_json:true}}`, `##{{x}}`, `<<x>>`): it reads as null.
Inside a string, a fallback's quotes end the string early (`"{{page_name|fallback:""}}"`): the
quotes are escaped, so the value reads as the unrendered placeholder it is. Run only on a body
that did not parse, so a well-formed request pays nothing for it.
"""

from __future__ import annotations

import re

from relay.core.placeholders import TOKEN

# Inside a string only `{{...}}` can hold quotes: a fallback, `|fallback:"friend"`.
_STRING_TOKEN = re.compile(r"\{\{[^{}]*\}\}")
_BARE_QUOTE = re.compile(r'(?<!\\)"')


def repair(text: str) -> str:
    """Return the body with each unrendered variable outside a string as null, and each
    fallback inside a string with its quotes escaped; the rest as it was."""
    out: list[str] = []
    at, end, in_string = 0, len(text), False
    while at < end:
        char = text[at]
        if in_string:
            at = _string_step(text, at, out)
            in_string = char != '"'
            continue
        token = TOKEN.match(text, at) if char in "#{<" else None
        if token:
            out.append("null")
            at = token.end()
            continue
        out.append(char)
        in_string = char == '"'
        at += 1
    return "".join(out)


def _string_step(text: str, at: int, out: list[str]) -> int:
    """Copy one piece of a string's inside (a character, an escape or a token); return where
    the next one starts."""
    char = text[at]
    if char == "\\":
        out.append(text[at : at + 2])
        return at + 2
    token = _STRING_TOKEN.match(text, at) if char == "{" else None
    if token:
        out.append(_BARE_QUOTE.sub(lambda _: '\\"', token.group()))
        return token.end()
    out.append(char)
    return at + 1
