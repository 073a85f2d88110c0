"""bench/corpus_scale.py: its copies survive the clean stage's dedupe, growth is read off the right sizes,
and the script runs its three stages at a tiny size."""

import json
import subprocess
import sys

from corpus_scale import distinct_copy, growth, roman, write_scaled_corpus

from helpers import ROOT
from transferlm.core.params import CleanParams, CorpusSource, FetchParams
from transferlm.data.clean import clean_corpus
from transferlm.data.corpus import gather_corpus

PLAY = ("# A Play\n\n## ACT I\n\n_Enter HAMLET_\n\n**HAMLET**  \n" + "To be, or not to be.  \n" * 30
        + "\n**OPHELIA**  \nMy lord.\n")


def test_every_copy_renames_its_speakers():
    assert distinct_copy(PLAY, 0) == PLAY
    second = distinct_copy(PLAY, 1)
    assert "**HAMLET II**" in second and "**OPHELIA II**" in second and "**HAMLET**" not in second
    assert [roman(n) for n in (2, 4, 9, 14, 40)] == ["II", "IV", "IX", "XIV", "XL"]


def test_the_copies_reach_the_size_and_the_clean_stage_keeps_them_all(tmp_path):
    plays = []
    for name in ("first", "second"):
        plays.append(tmp_path / f"{name}.md")
        plays[-1].write_text(PLAY.replace("A Play", name), encoding="utf-8")
    target = 5 * len(PLAY.encode())  # two plays a copy: three copies, the last one cut
    corpus = write_scaled_corpus(plays, target, tmp_path / "corpus")
    assert corpus["copies"] == 3 and corpus["documents"] == 5
    assert target <= corpus["bytes"] < target + 100
    documents = gather_corpus(FetchParams(corpus=[CorpusSource(str(tmp_path / "corpus"))]))
    kept, metrics = clean_corpus(documents, CleanParams(min_chars=0))
    assert len(kept) == 5 and metrics["dropped"] == []


def _size(mb: float, seconds: dict, memory: dict) -> dict:
    return {"size_mb": mb, "stages": {stage: {"seconds": seconds[stage], "cpu_seconds": seconds[stage],
                                              "base_rss_mb": 100, "peak_rss_mb": 100 + memory[stage]}
                                      for stage in seconds}}


def test_growth_is_judged_on_the_two_largest_sizes():
    # fetch: a fixed cost, then linear; clean: linear; tokenize: quadratic time from 50 to 200 MB.
    rows = [_size(5, {"fetch": 2.0, "clean": 1.0, "tokenize": 3.0}, {"fetch": 50, "clean": 10, "tokenize": 200}),
            _size(50, {"fetch": 3.0, "clean": 10.0, "tokenize": 20.0}, {"fetch": 60, "clean": 100, "tokenize": 900}),
            _size(200, {"fetch": 12.0, "clean": 40.0, "tokenize": 320.0},
                  {"fetch": 240, "clean": 400, "tokenize": 3600})]
    figures = growth(rows)
    assert figures["fetch"]["steps"][1]["time_exponent"] == 1.0 and figures["fetch"]["time_linear"]
    assert figures["clean"]["time_linear"] and figures["clean"]["memory_linear"]
    assert figures["tokenize"]["steps"][1]["time_exponent"] == 2.0
    assert figures["tokenize"]["time_linear"] is False and figures["tokenize"]["memory_linear"] is True


def test_the_script_measures_each_stage_at_a_tiny_size(tmp_path, tiny_model_dir):
    out = tmp_path / "scale.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench/corpus_scale.py"), "--sizes", "0.05",
                           "--model", str(tiny_model_dir), "--work", str(tmp_path), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (size,) = json.loads(out.read_text())["sizes"]
    assert size["size_mb"] == 0.05 and 50_000 <= size["corpus"]["bytes"] < 51_000
    assert set(size["stages"]) == {"fetch", "clean", "tokenize"}
    for figures in size["stages"].values():
        assert figures["seconds"] >= 0 and figures["peak_rss_mb"] >= figures["base_rss_mb"] > 0
    assert size["stages"]["clean"]["documents"] == size["corpus"]["documents"]  # none dropped
    assert size["stages"]["tokenize"]["tokens"] > 0
    assert "[corpus_scale] 0.05 MB: tokenize ..." in proc.stderr
    assert list(tmp_path.glob("corpus-scale-*")) == []  # its corpora removed after
