"""The clean stage's markup rule: strip the markdown and HTML left after script_layout.

Its own module because the linear-time emphasis, heading, link and tag code is as long as the other
clean rules together; transferlm.data.clean runs it as the `markup` rule and re-exports strip_markup.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

# Every markup rule runs in linear time. A regex of the form `open (anything)+? close` rescans the rest
# of the paragraph from each opener that has no closer, which is quadratic (a 32 KB line of `**x `
# took 9 s). So: comments are found with str.find, link parts cannot contain another bracket or
# parenthesis, headings strip their closing #s in a function, and emphasis pairs each opener with the
# first closer after it (what the lazy regex did) while searching for each next delimiter only past the
# last one found, so nothing is rescanned.

_PARAGRAPH_BREAK = re.compile(r"(\n\n+)")  # emphasis may wrap a line, never a paragraph


def _strip_comments(text: str) -> tuple[str, int]:
    """Remove `<!-- ... -->` (across lines); an unclosed `<!--` and what follows it stay."""
    out, pos, count = [], 0, 0
    while (start := text.find("<!--", pos)) != -1:
        end = text.find("-->", start + 4)
        if end == -1:
            break
        out.append(text[pos:start])
        pos, count = end + 3, count + 1
    out.append(text[pos:])
    return "".join(out), count


def _heading(match: re.Match) -> str:
    """The text of an ATX heading: `## Title ##` -> `Title` (a closing run of # needs a space before it)."""
    body = match[1].rstrip(" \t")
    bare = body.rstrip("#")
    if bare != body and (not bare or bare[-1] in " \t"):
        body = bare
    return body.strip(" \t")


def _emphasis(*kinds: tuple[str, str], zero_width: int = 0) -> Callable[[str], tuple[str, int]]:
    """A rule that drops paired emphasis delimiters and keeps the text between them.

    Each kind is (opener, closer): patterns matching the delimiters themselves, or with zero_width=n
    a lookahead at a delimiter n characters long, so overlapping candidates (the two in `***`) are all
    found. Within each paragraph, from left to right, an opener pairs with the first closer of its own
    kind that leaves at least one character between them; once an opener of a kind finds no closer, no
    later opener of that kind can.
    """
    compiled = [(re.compile(opener), re.compile(closer)) for opener, closer in kinds]

    def find(pattern: re.Pattern, piece: str, at: int) -> tuple[int, int] | None:
        m = pattern.search(piece, at)  # search(piece, at), not piece[at:]: lookbehinds still see before `at`
        return None if m is None else (m.start(), m.start() + zero_width if zero_width else m.end())

    def strip_piece(piece: str) -> tuple[str, int]:
        # Each kind's next opener and next closer are cached and only searched for again past the last
        # one, so no stretch of the paragraph is scanned twice per kind.
        opens: list = [None] * len(compiled)
        closes: list = [None] * len(compiled)
        done = [False] * len(compiled)
        out, pos, count = [], 0, 0
        while True:
            best = None
            for k, (open_re, _) in enumerate(compiled):
                if done[k]:
                    continue
                if opens[k] is None or opens[k][0] < pos:
                    opens[k] = find(open_re, piece, pos)
                    if opens[k] is None:
                        done[k] = True
                        continue
                if best is None or opens[k][0] < opens[best][0]:
                    best = k
            if best is None:
                break
            start, end = opens[best]
            if closes[best] is None or closes[best][0] <= end:  # the text between must not be empty
                closes[best] = find(compiled[best][1], piece, end + 1)
                if closes[best] is None:
                    done[best] = True  # no later opener of this kind can find a closer either
                    continue
            close_start, close_end = closes[best]
            out += [piece[pos:start], piece[end:close_start]]
            pos, count = close_end, count + 1
        out.append(piece[pos:])
        return "".join(out), count

    def rule(text: str) -> tuple[str, int]:
        pieces, total = _PARAGRAPH_BREAK.split(text), 0
        for i in range(0, len(pieces), 2):  # odd indexes are the paragraph breaks themselves
            pieces[i], n = strip_piece(pieces[i])
            total += n
        return "".join(pieces), total

    return rule


_MARKUP = [  # (pattern, replacement) or a rule function, in order: tags before entities, so `&lt;b&gt;` stays text
    _strip_comments,
    (re.compile(r"<br\s*/?>|</p\s*>", re.I), "\n"),
    (re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>"), ""),
    (re.compile(r"!?\[([^\[\]\n]*)\]\([^()\n]*\)"), r"\1"),  # [text](url), ![alt](src)
    (re.compile(r"^[ \t]{0,3}#{1,6}([ \t][^\n]*)$", re.M), _heading),
    _emphasis((r"(?<!\\)(?=\*\*\S)", r"(?<=[^\s\\])(?=\*\*)"),
              (r"(?<!\\)(?=__\S)", r"(?<=[^\s\\])(?=__)"), zero_width=2),  # **strong**, __strong__
    _emphasis((r"(?<![\w\\*])(?=\*[^\s*])", r"(?<=[^\s\\*])(?=\*(?![\w*]))"), zero_width=1),  # *em*
    _emphasis((r"(?<![\w\\])_+(?=[^\s_])", r"(?<=[^\s\\_])_+(?!\w)")),  # _em_ (any run of _)
    (re.compile(r"\\([\\`*_{}\[\]()#+\-.!|>~])"), r"\1"),  # markdown escapes: \[ -> [
    (re.compile(r"&(?:#\d+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]{1,31});"), lambda m: html.unescape(m[0])),
]  # fmt: skip


def strip_markup(text: str) -> tuple[str, int]:
    count = 0
    for rule in _MARKUP:
        if callable(rule):
            text, n = rule(text)
        else:
            pattern, replacement = rule
            text, n = pattern.subn(replacement, text)
        count += n
    return text, count
