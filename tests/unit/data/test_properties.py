"""Property-based tests: the cleaning rules and the params loader on arbitrary and adversarial input.

Settings are modest (a couple of hundred examples, a deadline of seconds) so that the suite stays fast;
hypothesis keeps the failing examples it finds in .hypothesis/ and tries them first next time.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from transferlm.core.errors import ParamError
from transferlm.core.params import CleanParams, Params, load_params, parse_params
from transferlm.data.clean import (
    RULES,
    clean_text,
    drop_control_chars,
    fix_unicode,
    normalise_whitespace,
    strip_boilerplate,
    strip_markup,
)

ROOT = Path(__file__).resolve().parents[3]
MODEST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

# Text made of the pieces the rules look for, so examples hit the rules' edge cases far more often
# than uniformly random characters would.
MARKUP_PIECES = ["*", "**", "_", "__", "#", "# ", "[", "]", "(", ")", "<", ">", "<!--", "-->", "<b>", "</p>",
                 "<br>", "&amp;", "&#x41;", "&bogus;", "\\", "`", " ", "\t", "\n", "\n\n", "a", "Z", "HAMLET",
                 ":", "(CONTINUED)", "12", "Page 3", "*** START OF THE PROJECT GUTENBERG EBOOK X ***",
                 "*** END OF THE PROJECT GUTENBERG EBOOK X ***", "\u2014", "\u2026", "\u201c", "\ufb01",
                 "\u00a0", "\u200b", "\x00", "\x85", "\ufeff", "\u0301", "\U0001F600"]
markup_text = st.lists(st.sampled_from(MARKUP_PIECES), max_size=80).map("".join)
any_text = st.one_of(st.text(max_size=300), markup_text)

# Rules that only take text away, and those whose output is a subsequence of their input.
SHRINKING = [drop_control_chars, strip_boilerplate, strip_markup, normalise_whitespace]
SUBSEQUENCE = [drop_control_chars, strip_boilerplate]
IDEMPOTENT = [drop_control_chars, fix_unicode, normalise_whitespace]


def is_subsequence(small: str, big: str) -> bool:
    chars = iter(big)
    return all(ch in chars for ch in small)


@MODEST
@given(any_text)
def test_no_rule_crashes_and_each_reports_a_count(text):
    for _, rule in RULES:
        out, count = rule(text)
        counts = count.values() if isinstance(count, dict) else [count]  # a rule may count per kind of edit
        assert isinstance(out, str) and all(isinstance(n, int) and n >= 0 for n in counts)


@MODEST
@given(any_text)
def test_removing_rules_never_add_content(text):
    for rule in SHRINKING:
        out, _ = rule(text)
        assert len(out) <= len(text), rule.__name__
    for rule in SUBSEQUENCE:
        out, _ = rule(text)
        assert is_subsequence(out, text), rule.__name__


@MODEST
@given(any_text)
@example("\ufe31 \u2034")  # NFKC turns these into an em dash and primes, which the table then maps
def test_rules_that_normalise_are_idempotent(text):
    for rule in IDEMPOTENT:
        once, _ = rule(text)
        twice, count = rule(once)
        assert twice == once, rule.__name__
        assert count == 0, rule.__name__


@MODEST
@given(any_text)
def test_markup_keeps_plain_words(text):
    # Whatever markup surrounds them, letters are never removed by the markup rule (only delimiters,
    # tags, comments, entities and link targets are).
    plain = "".join(ch for ch in text if ch.isalpha())
    if any(marker in text for marker in ("<", "](", "&")):
        return  # tags, comments, entities and link targets legitimately take letters with them
    out, _ = strip_markup(text)
    assert "".join(ch for ch in out if ch.isalpha()) == plain


@MODEST
@given(st.lists(st.sampled_from(MARKUP_PIECES), min_size=1, max_size=8).map("".join),
       st.integers(min_value=500, max_value=4000))
def test_whole_pipeline_on_a_long_repeated_line_stays_fast(unit, repeats):
    # A repeated unit is the shape that made the old rules quadratic; the deadline (2 s) bounds the run.
    text = unit * repeats
    out, stats = clean_text(text, CleanParams(script_layout=False))
    assert len(out) <= 3 * len(text)  # unicode may turn a character into up to 3 ("\u2026" -> "...")
    assert set(stats) == {name for name, _ in RULES if name != "script_layout"}


# --- the params loader -------------------------------------------------------------------------------

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
yaml_values = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), inner, max_size=4)),
    max_leaves=12)
SECTIONS = [f.name for f in dataclasses.fields(Params) if f.name != "launch"]  # launch: a top-level string


def one_line_naming_a_key(error: ParamError) -> bool:
    message = str(error)
    return "\n" not in message and ": " in message and bool(message.split(": ", 1)[0])


@MODEST
@given(yaml_values)
def test_any_yaml_document_loads_or_gives_one_line(raw):
    try:
        parse_params(raw)
    except ParamError as error:
        assert one_line_naming_a_key(error), str(error)


@MODEST
@given(st.sampled_from(SECTIONS), st.data())
def test_any_value_for_a_known_key_loads_or_names_a_key_of_its_section(section, data):
    fields = [f.name for f in dataclasses.fields(getattr(Params(), section))]
    name = data.draw(st.sampled_from(fields))
    value = data.draw(yaml_values)
    try:
        parse_params({section: {name: value}})
    except ParamError as error:
        assert one_line_naming_a_key(error), str(error)
        # that key, or one that must agree with it (scratch.sizes must name entries of scratch.shapes)
        assert str(error).startswith(f"{section}."), str(error)


@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_any_params_file_loads_or_gives_one_line(tmp_path, content):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    try:
        load_params(path)
    except ParamError as error:
        assert one_line_naming_a_key(error), str(error)


def test_the_loader_round_trips_the_defaults():
    # The dataclass defaults, written out as YAML and read back, are the same params (no lossy coercion).
    defaults = dataclasses.asdict(Params())
    raw = yaml.safe_load(yaml.safe_dump(copy.deepcopy(defaults)))
    assert dataclasses.asdict(parse_params(raw)) == defaults
