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
_IN_STRING_VARIABLE = r"\{\{[^{}]*\}\}"
_BARE_QUOTE = re.compile(r'(?<!\\)"')
# What may need doing, found by the regex engine: outside a string, a token or the quote that
# opens a string; inside one, an escape (skipped whole), a token, or the closing quote.
_OUTSIDE = re.compile(rf'(?P<token>{TOKEN.pattern})|"')
_INSIDE = re.compile(rf'\\.|(?P<token>{_IN_STRING_VARIABLE})|"', re.DOTALL)


def repair(text: str) -> str:
    """Return the body with each unrendered variable outside a string as null, and each
    fallback inside a string with its quotes escaped; the rest as it was."""
    out: list[str] = []
    at, in_string = 0, False
    while found := (_INSIDE if in_string else _OUTSIDE).search(text, at):
        out.append(text[at : found.start()])
        token, piece = found["token"], found.group()
        if token is None:
            out.append(piece)
            in_string ^= piece == '"'  # an escape leaves the string open
        elif in_string:
            out.append(_BARE_QUOTE.sub(lambda _: '\\"', token))
        else:
            out.append("null")
        at = found.end()
    out.append(text[at:])
    return "".join(out)
