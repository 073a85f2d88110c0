"""The canonical script layout's building blocks, shared by the play and screenplay converters."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# A printed script wraps a line at a space or right after the hyphen of a hyphenated word; it never adds
# a hyphen of its own. So a wrapped line that ends in one hyphen right after a letter or digit
# ("walkie-" / "talkie") is a word broken at its hyphen: the next line joins it without a space, as the
# word is typed on one line in Fountain. A real dash stays a dash and joins with a space: a hyphen after
# a space ("Wait -") or a double one ("I don't--", "I don't --"). Ambiguous is a hyphen left dangling
# before "and", "or", "nor" or "to" ("pre- and post-war", "ten- to twelve-year-old"): the printed line
# was wrapped at the space after it, so before one of those words alone the space stays. Thus "self-" /
# "conscious" is "self-conscious" and "anti-" / "and pro-war" is "anti- and pro-war", as in Fountain; what
# this gets wrong is rare: a compound whose second part is such a bare word ("lean-" / "to" keeps its
# space), and a one-hyphen interruption ("I was-" / "never") read as a compound (scripts write "--").
_SUSPENDED = re.compile(r"(?:and|or|nor|to)(?: |$)")


def _joins_without_space(before: str, after: str) -> bool:
    return (
        len(before) > 1
        and before[-1] == "-"
        and before[-2].isalnum()
        and after[:1].isalnum()
        and not _SUSPENDED.match(after)
    )


def join_wrapped(lines: list[str]) -> str:
    """Wrapped lines as one: joined with a space, or without one after a word broken at its hyphen."""
    parts: list[str] = []
    for i, line in enumerate(lines):
        if i and not _joins_without_space(lines[i - 1], line):
            parts.append(" ")
        parts.append(line)
    return "".join(parts)


@dataclass
class Block:
    kind: str  # "speech" (cue + lines), "furniture" (a heading or direction), "text" (anything else)
    lines: list[str]
    speaker: str = ""
    joinable: bool = False  # the last line is dialogue that a wrapped continuation joins
    indent: int = -1  # screenplays: the dialogue's indentation, to tell a cue from a line in capitals
    # The pieces of the joinable last line, joined into it only when the block is read or grows another
    # line: adding each wrapped line to the string would copy the whole speech every time (quadratic).
    pieces: list[str] = field(default_factory=list)

    def fold(self) -> None:
        if len(self.pieces) > 1:
            self.lines[-1] = join_wrapped(self.pieces)
            self.pieces = [self.lines[-1]]


@dataclass
class Builder:
    """Collects blocks line by line; `open` is the speech or text block that new lines join."""

    blocks: list[Block] = field(default_factory=list)
    open: Block | None = None
    edits: int = 0  # cues, directions and headings rewritten
    scenes: int = 0
    cues: int = 0

    def blank(self) -> None:
        self.open = None

    def heading(self, line: str, scene: bool = False) -> None:
        self.blocks.append(Block("furniture", [line]))
        self.open = None
        self.edits += 1
        self.scenes += scene

    def direction(self, text: str) -> None:
        line = f"[{text}]"
        self.edits += 1
        if self.open is not None and self.open.kind == "speech":
            self.open.fold()
            self.open.lines.append(line)  # a direction inside a speech stays with its speaker
            self.open.joinable = False
        else:
            self.blocks.append(Block("furniture", [line]))
            self.open = None

    def cue(self, name: str, continued: bool = False) -> None:
        self.edits += 1
        self.cues += 1
        last = self.blocks[-1] if self.blocks else None
        if continued and last is not None and last.kind == "speech" and last.speaker == name:
            self.open = last  # screenplay (CONT'D) across a page break: one speech, not two
            return
        self.open = Block("speech", [f"{name}:"], speaker=name)
        self.blocks.append(self.open)

    def line(self, text: str, join: bool = False) -> None:
        if self.open is None:
            self.open = Block("text", [])
            self.blocks.append(self.open)
        if join and self.open.joinable:
            self.open.pieces.append(text)
        else:
            self.open.fold()
            self.open.lines.append(text)
            self.open.pieces = [text]
        self.open.joinable = join

    def counts(self) -> dict[str, int]:
        speeches = sum(1 for block in self.blocks if block.kind == "speech")
        return {"count": self.edits, "scenes": self.scenes, "cues": self.cues, "speeches": speeches}

    def render(self) -> str:
        parts: list[str] = []
        for i, block in enumerate(self.blocks):
            block.fold()
            if i:
                together = block.kind == "furniture" and self.blocks[i - 1].kind == "furniture"
                parts.append("\n" if together else "\n\n")
            parts.append("\n".join(block.lines))
        return "".join(parts) + "\n"


def speaker(name: str) -> str:
    """`First Gentleman` -> `FIRST GENTLEMAN`; drops stray colons (`ROSENCRANTZ: & GUILDENSTERN:`)."""
    return " ".join(name.replace(":", " ").split()).upper()


def direction_text(raw: str) -> str:
    """Inner text of a direction, without markdown escapes, emphasis markers or its own brackets."""
    text = re.sub(r"\\(.)", r"\1", raw)
    text = re.sub(r"[\[\]_*]", "", text)
    return " ".join(text.split())
