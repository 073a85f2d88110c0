"""Reading the canonical script layout back: which layout the corpus is in, and whether a sample keeps it.

The clean stage (transferlm.data.script_layout) writes every script it recognises in one layout: a `NAME:` cue
alone on its line with the speech below it, a blank line between speeches, directions in square brackets
on lines of their own, act and scene headings of plays and INT./EXT. scene headings of screenplays as
plain lines. Its readers parse the layouts scripts arrive in, not the one they write, so this module
reads that one, with the clean stage's own definitions: a cue is what layout_blocks.Builder writes for a
`speaker()` name, a scene heading is what the screenplay reader takes for one, an act or scene heading
what the play reader does.

Text is read in paragraphs (runs of non-blank lines), as Builder renders its blocks: a speech (a cue,
then lines of speech and directions), furniture (headings and directions only) or plain text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from transferlm.core.paths import CLEAN_DOCUMENTS
from transferlm.data.layout_blocks import speaker
from transferlm.data.screenplay import _SP_HEADING
from transferlm.data.script_layout import _GB_HEADING

DOCUMENTS = CLEAN_DOCUMENTS  # the clean stage's documents, all in this layout or prose

PLAY, SCREENPLAY, PROSE = "play", "screenplay", "prose"
LAYOUTS = (PLAY, SCREENPLAY, PROSE)

# What may stand between speeches in each script layout (for prose no sample is judged).
_FURNITURE = {PLAY: {"direction", "heading"}, SCREENPLAY: {"direction", "scene", "heading"}}
# A document is a script when it holds at least this many cues, and this many per non-blank line (the play
# reader's own bar for a plain-text play, transferlm.data.script_layout._is_gutenberg_play).
MIN_CUES = 3
MIN_CUES_PER_LINE = 0.02
_LONGEST_NAME = 60  # as the markdown reader's cue pattern allows


def line_kind(line: str) -> str:
    """blank | cue | direction | scene (an INT./EXT. heading) | heading (an act or scene of a play) | line."""
    stripped = line.strip()
    if not stripped:
        return "blank"
    if stripped.startswith("[") and stripped.endswith("]"):
        return "direction"
    name = stripped[:-1]
    if (stripped.endswith(":") and line == stripped and 0 < len(name) <= _LONGEST_NAME
            and speaker(name) == name and re.search("[A-Z]", name)):
        return "cue"
    if _SP_HEADING.match(line):
        return "scene"
    if _GB_HEADING.match(line):
        return "heading"
    return "line"


@dataclass(frozen=True)
class Paragraph:
    start: int  # character offsets of its first line's start and its last line's end
    end: int
    kinds: tuple[str, ...]  # line_kind of each line

    @property
    def kind(self) -> str:
        """speech | furniture | text."""
        if self.kinds[0] == "cue" and all(kind in ("line", "direction") for kind in self.kinds[1:]):
            return "speech"
        if all(kind in ("direction", "scene", "heading") for kind in self.kinds):
            return "furniture"
        return "text"


def paragraphs(text: str) -> list[Paragraph]:
    found: list[Paragraph] = []
    start, kinds, pos = 0, [], 0
    for line in text.split("\n"):
        kind = line_kind(line)
        if kind == "blank":
            if kinds:
                found.append(Paragraph(start, pos - 1, tuple(kinds)))
                kinds = []
        else:
            if not kinds:
                start = pos
            kinds.append(kind)
        pos += len(line) + 1
    if kinds:
        found.append(Paragraph(start, len(text), tuple(kinds)))
    return found


# ---------------------------------------------------------------------------------- the corpus's layout


@dataclass(frozen=True)
class Reading:
    """What a document (or the corpus) holds in the canonical layout."""

    cues: int = 0
    scenes: int = 0  # INT./EXT. scene headings
    directions: int = 0
    lines: int = 0  # non-blank lines
    chars: int = 0

    def __add__(self, other: Reading) -> Reading:
        return Reading(*(a + b for a, b in zip(self.counts(), other.counts(), strict=True)))

    def counts(self) -> tuple[int, ...]:
        return self.cues, self.scenes, self.directions, self.lines, self.chars

    def layout(self) -> str:
        if self.cues < max(MIN_CUES, MIN_CUES_PER_LINE * self.lines):
            return PROSE
        return SCREENPLAY if self.scenes else PLAY


def read_document(text: str) -> Reading:
    kinds = [line_kind(line) for line in text.split("\n")]
    return Reading(cues=kinds.count("cue"), scenes=kinds.count("scene"), directions=kinds.count("direction"),
                   lines=len(kinds) - kinds.count("blank"), chars=len(text))


def corpus_layout(texts: Iterable[str]) -> tuple[str, str]:
    """(the layout most of the corpus's text is in, a sentence saying what was read to decide it)."""
    readings = [read_document(text) for text in texts]
    by_layout = {layout: [r for r in readings if r.layout() == layout] for layout in LAYOUTS}
    chars = {layout: sum(r.chars for r in found) for layout, found in by_layout.items()}
    layout = max(LAYOUTS, key=lambda name: (chars[name], -LAYOUTS.index(name)))
    total = sum(by_layout[layout], Reading())
    share = chars[layout] / max(1, sum(chars.values()))
    what = (f"{total.scenes:,} INT./EXT. scene headings, {total.cues:,} NAME: cues and {total.directions:,} "
            "bracketed directions" if layout == SCREENPLAY else
            f"{total.cues:,} NAME: cues and {total.directions:,} bracketed directions" if layout == PLAY else
            "too few NAME: cues for a script")
    plural = {PLAY: "plays", SCREENPLAY: "screenplays", PROSE: "prose"}[layout]
    return layout, (f"{len(by_layout[layout])} of {len(readings)} cleaned documents ({share:.0%} of the text) "
                    f"read as {plural}: {what}")


# ---------------------------------------------------------------------------------- a sample's layout


def follows_layout(prompt: str, text: str, layout: str, complete: bool = True) -> bool:
    """Whether a sample, read on from its prompt, keeps the script layout: every paragraph it writes into is
    a speech (a cue with speech below it) or what may stand between speeches, and one is a speech.

    The sample's first paragraph usually continues the prompt's last one (the speech the prompt began), so
    the text is read with its prompt and judged from the prompt's last paragraph on. A cue with no speech
    is allowed only at the very end; `complete=False` (the sample was cut at max_new_tokens) leaves its
    unfinished last line out.
    """
    full = prompt + text
    if not complete:
        full = full[: max(len(prompt), full.rfind("\n") + 1)]
    judged = [p for p in paragraphs(full) if p.end > len(prompt.rstrip())]
    allowed = _FURNITURE[layout]
    for number, paragraph in enumerate(judged, start=1):
        if paragraph.kind == "speech":
            if len(paragraph.kinds) == 1 and number < len(judged):
                return False  # a cue and no speech before the next paragraph
        elif paragraph.kind == "text" or not set(paragraph.kinds) <= allowed:
            return False
    return any(paragraph.kind == "speech" for paragraph in judged)
