"""Screenplays, printed or Fountain, into the canonical layout (see transferlm.data.script_layout).

Printed: the layout of PDFs turned into text and of script sites, cues in capitals indented far right,
dialogue indented and wrapped at ~35 columns. Fountain (https://fountain.io/syntax): the same elements
typed flush left, plus markup that has no printed equivalent. `read_fountain` removes what is not script
text (title page keys other than the title, notes, boneyard, sections, synopses, page breaks) and
returns, next to the remaining lines, the kind of each line whose kind Fountain forces:

    .HEADING            forced scene heading     -> "heading"
    @McCLANE            forced character cue     -> "cue"
    BRICK ^             dual dialogue            -> an ordinary cue (the two speeches follow each other)
    !ACTION             forced action            -> "action"
    > CUT TO:           forced transition        -> "transition"
    > THE END <         centered text            -> "action"
    ~lyric              a sung dialogue line     -> the line without the tilde

Then one converter reads both. A speech's wrapped lines are joined into one line per stretch of
dialogue, so the model does not learn the page's line width and both layouts of one script clean to the
same text; a word the page broke at its hyphen ("walkie-" / "talkie") is joined without a space
(transferlm.data.layout_blocks.join_wrapped says when a line-end hyphen is a dash instead).
"""

from __future__ import annotations

import re

from transferlm.data.layout_blocks import Builder, join_wrapped, speaker

_TITLE_KEY = re.compile(
    r"^(title|credit|authors?|source|draft date|date|contact|copyright|notes|revision)[ \t]*:(.*)$", re.I
)
# Every pattern here runs in linear time on any line: a pattern that rescans the rest of the line from
# each position (an unclosed `[[` searched for its `]]`, a run of tabs before a `#` that never comes) is
# quadratic. So notes and boneyard are cut with str.find, the scene number may only start where a run of
# spaces starts, and the heading and cue patterns below never re-read a stretch they have passed.
_SCENE_NUMBER = re.compile(r"(?<![ \t])[ \t]*#[\w.-]+#[ \t]*$")
_GONE = "\x00"  # marks where a note or boneyard was; control characters are cleaned out before this runs


def _cut(text: str, opener: str, closer: str) -> str:
    """Replace each `opener ... closer` (across lines, the first closer after the opener) with _GONE."""
    out, pos = [], 0
    while (start := text.find(opener, pos)) != -1:
        end = text.find(closer, start + len(opener))
        if end == -1:
            break  # no closer after this opener, so none after any later opener either
        out += [text[pos:start], _GONE]
        pos = end + len(closer)
    out.append(text[pos:])
    return "".join(out)


def _title_page(lines: list[str]) -> tuple[str, int]:
    """(the title, lines the title page takes) when the file opens with `Key: value` lines."""
    if not lines or not _TITLE_KEY.match(lines[0]):
        return "", 0
    end = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    title: list[str] = []
    in_title = False
    for line in lines[:end]:
        if m := _TITLE_KEY.match(line):
            in_title = m.group(1).lower() == "title"
            if in_title and m.group(2).strip():
                title.append(m.group(2).strip())
        elif in_title:
            title.append(line.strip())  # a value on indented lines below its key
    return " ".join(re.sub(r"[*_]", "", part) for part in title).strip(), end


def read_fountain(text: str) -> tuple[str, list[str], dict[int, str]]:
    """(title or "", the script lines, {line index: forced kind}) for the converter."""
    text = _cut(_cut(text, "/*", "*/"), "[[", "]]")  # boneyard, then notes
    raw = text.split("\n")
    title, start = _title_page(raw)
    lines: list[str] = []
    forced: dict[int, str] = {}
    for line in raw[start:]:
        if _GONE in line:
            line = line.replace(_GONE, "")
            if not line.strip():
                continue  # a note on its own line: gone, without leaving a blank that would split a speech
        stripped = line.strip()
        after_blank = not lines or not lines[-1].strip()
        kind = None
        if re.match(r"^#|^=(?!==)|^={3,}$", stripped):
            continue  # section, synopsis, page break: outline, not script text
        if after_blank and re.match(r"^\.[A-Za-z0-9]", stripped):
            kind, stripped = "heading", stripped[1:]
        elif stripped.startswith("@"):
            kind, stripped = "cue", stripped[1:]
        elif stripped.startswith("!"):
            kind, stripped = "action", stripped[1:]
        elif stripped.startswith(">") and stripped.endswith("<"):
            kind, stripped = "action", stripped[1:-1].strip()
        elif stripped.startswith(">"):
            kind, stripped = "transition", stripped[1:].strip()
        elif stripped.startswith("~"):
            stripped = stripped[1:].strip()
        elif stripped.endswith("^") and stripped[:-1].strip().isupper():
            stripped = stripped[:-1].rstrip()
        if kind is not None or stripped != line.strip():
            line = _SCENE_NUMBER.sub("", stripped) if kind == "heading" else stripped
        else:
            line = _SCENE_NUMBER.sub("", line)
        if kind is not None:
            forced[len(lines)] = kind
        lines.append(line)
    return title, lines, forced


# An optional scene number on the left is repeated on the right: `12  INT. HOUSE - NIGHT  12`.
# The heading (group 2) ends where only the repeated number and spaces are left: it is read as runs of
# non-spaces and runs of spaces, and a run of spaces ends it when nothing but that tail follows.
_SP_HEADING = re.compile(
    r"^[ \t]*+(?:(\d+[A-Z]?)[ \t]+)?((?:INT|EXT|INT\.?/EXT|EXT\.?/INT|I/E|EST)\.?[ \t]++"
    r"(?:[^a-z \t\n]++|\n(?!\Z)|[ \t]++(?!\1[ \t]*+$|$))*+)"
    r"(?:[ \t]+\1)?[ \t]*$"
)
_SP_TRANSITION = re.compile(
    r"^[ \t]*((?:[A-Z]+[ \t]+)*TO:|FADE IN:|FADE OUT\.|FADE TO BLACK\.|CUT TO BLACK\.|INTERCUT:?)[ \t]*$"
)
_SP_CUE = re.compile(
    r"^[ \t]*(?P<name>[A-Z][A-Z0-9 .'&-]{0,38}?)[ \t]*(?P<ext>(?:\([A-Z0-9 .'\u2019/-]+\)[ \t]*)*)$"
)
_SP_CONTINUED = re.compile(r"^(?:CONT['\u2019]?D|CONT\.|CONTINUING)$")


def _sp_cue(line: str) -> re.Match[str] | None:
    if _SP_HEADING.match(line) or _SP_TRANSITION.match(line):
        return None
    m = _SP_CUE.match(line)
    return m if m and re.search(r"[A-Z]{2}", m.group("name")) else None


def is_screenplay(lines: list[str], forced: dict[int, str]) -> bool:
    headings = sum(1 for line in lines if _SP_HEADING.match(line)) + sum(k == "heading" for k in forced.values())
    cues = sum(1 for line, nxt in zip(lines, lines[1:], strict=False) if nxt.strip() and _sp_cue(line))
    return headings >= 1 and cues + sum(k == "cue" for k in forced.values()) >= 2


_SP_BY = re.compile(r"^[ \t]*(?:(?:written|screenplay|teleplay|story)[ \t]+)?by:?[ \t]*$", re.I)


def _cue_parts(line: str) -> tuple[str, str]:
    """A forced cue's (name, extensions): `McCLANE (V.O.) (CONT'D)` -> (`McCLANE`, `(V.O.) (CONT'D)`).

    The name is as short as it can be with only `(...)` groups and spaces after it. Read from the right
    in one pass (a regex with a lazy name would try every split, each time re-reading the rest).
    """
    n = len(line)
    start = n - len(line.lstrip(" \t"))
    groups = [False] * (n + 1)  # groups[j]: line[j:] is `(...)` groups, each followed by spaces only
    groups[n] = True
    spaces_end = [n] * (n + 1)  # spaces_end[j]: where the run of spaces and tabs from j ends
    close = -1  # the first `)` at or after j
    for j in range(n - 1, start - 1, -1):
        ch = line[j]
        spaces_end[j] = spaces_end[j + 1] if ch in " \t" else j
        if ch == "(" and close != -1:
            groups[j] = groups[spaces_end[close + 1]]
        elif ch == ")":
            close = j
    k = next(k for k in range(start, n + 1) if groups[spaces_end[k]])
    return line[start:k], line[spaces_end[k] :]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _printed_title_page(lines: list[str], forced: dict[int, str]) -> tuple[str, int]:
    """(title, lines it takes) when the lines before the first heading or transition hold a `Written by`."""
    for end, line in enumerate(lines):
        if _SP_HEADING.match(line) or _SP_TRANSITION.match(line) or forced.get(end) == "heading":
            break
    else:
        return "", 0
    if not any(_SP_BY.match(line) for line in lines[:end]):
        return "", 0
    return next(line.strip() for line in lines[:end] if line.strip()), end


def convert_screenplay(lines: list[str], forced: dict[int, str], title: str = "") -> Builder:
    out = Builder()
    action: list[str] = []  # an action paragraph becomes one direction line

    def flush_action() -> None:
        if action:
            out.direction(join_wrapped(action))  # a word wrapped at its hyphen is joined whole
            action.clear()

    printed_title, i = _printed_title_page(lines, forced)
    if title or printed_title:
        out.heading(title or printed_title)
    while i < len(lines):
        line = lines[i].strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        kind = forced.get(i)
        speech = out.open if out.open is not None and out.open.kind == "speech" else None
        # Inside a speech a line in capitals is a new cue only after a blank line or, in the printed
        # layout, when indented further than the dialogue (a cue sits right of the dialogue).
        may_cue = speech is None or not lines[i - 1].strip() or (0 <= speech.indent < _indent(lines[i]) - 2)
        if not line:
            flush_action()
            out.blank()
        elif kind == "heading" or (kind is None and (m := _SP_HEADING.match(lines[i]))):
            flush_action()
            out.heading(line if kind else " ".join(m.group(2).split()), scene=True)
        elif kind == "transition" or (kind is None and (m := _SP_TRANSITION.match(lines[i]))):
            flush_action()
            out.blank()
            out.direction(line if kind else m.group(1))
        elif kind == "cue" or (kind is None and nxt and may_cue and (m := _sp_cue(lines[i]))):
            flush_action()
            name, ext = _cue_parts(line) if kind else (m.group("name"), m.group("ext"))
            extensions = re.findall(r"\(([^)]*)\)", ext)
            continued = any(_SP_CONTINUED.match(e.strip()) for e in extensions)
            out.cue(speaker(name), continued=continued)
            for ext in extensions:
                if not _SP_CONTINUED.match(ext.strip()):
                    out.direction(ext.strip())  # (V.O.), (O.S.): who/where, kept as a direction
        elif speech is not None and kind is None and line.startswith("("):
            parenthetical = [line]
            while not parenthetical[-1].endswith(")") and i + 1 < len(lines) and lines[i + 1].strip():
                i += 1
                parenthetical.append(lines[i].strip())
            out.direction(join_wrapped(parenthetical).strip("()").strip())
        elif speech is not None and kind is None and (speech.indent < 0 or _indent(lines[i]) >= speech.indent - 2):
            if speech.indent < 0:
                speech.indent = _indent(lines[i])
            out.line(line, join=True)  # wrapped dialogue: one line per stretch of speech
        else:
            if speech is not None:
                out.blank()  # back at the action margin without a blank line: the speech has ended
            action.append(line)
        i += 1
    flush_action()
    return out
