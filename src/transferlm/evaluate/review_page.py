"""What the reviewer sees: the review page, a printable sheet and the folder's README.

The page is one static HTML file, no server; ratings live in the browser until exported. The samples
arrive as JSON in a `<script type="application/json">` block, so no sample text is ever parsed as HTML;
the page's script inserts it with textContent only.
"""

from __future__ import annotations

import html
import json

SCALE = "1 = not at all, 2 = barely, 3 = partly, 4 = mostly, 5 = fully"

PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Blind review</title>
<style>
body { font-family: sans-serif; margin: 1.5em auto; max-width: 80em; padding: 0 1em; }
header { position: sticky; top: 0; background: #fff; border-bottom: 1px solid #bbb; padding: 0.5em 0; z-index: 1; }
.card { border: 1px solid #bbb; border-radius: 4px; padding: 0.8em; margin: 1em 0; }
.text { white-space: pre-wrap; font-family: serif; background: #f6f6f6; padding: 0.6em; margin: 0.4em 0; }
.prompt { white-space: pre-wrap; font-family: serif; color: #555; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
button[aria-pressed="true"] { background: #1d5fbf; color: #fff; border-color: #1d5fbf; }
button { min-width: 2.4em; padding: 0.3em 0.6em; margin: 0 0.1em; cursor: pointer; }
textarea { width: 100%; min-height: 2.5em; box-sizing: border-box; }
.criterion { margin: 0.3em 0; }
.criterion span { display: inline-block; min-width: 7em; }
nav button { font-weight: bold; }
#export-text { min-height: 8em; font-family: monospace; }
.hidden { display: none; }
</style>
</head>
<body>
<script type="application/json" id="review-data">__DATA__</script>
<header>
  <h1>Blind review</h1>
  <nav>
    <button id="mode-rate" aria-pressed="true">Rate samples</button>
    <button id="mode-pairs" aria-pressed="false">Compare pairs</button>
    <label>Your name <input id="reviewer" size="16"></label>
    <button id="export">Export ratings</button>
    <span id="progress"></span>
  </nav>
</header>
<ul id="instructions"></ul>
<section id="rate-view"></section>
<section id="pairs-view" class="hidden"></section>
<section id="export-view" class="hidden">
  <p id="export-help"></p>
  <textarea id="export-text" readonly></textarea>
</section>
<script>
"use strict";
const data = JSON.parse(document.getElementById("review-data").textContent);
const storeKey = "transferlm-review/" + data.sheet;
const state = JSON.parse(localStorage.getItem(storeKey) || "null") || {reviewer: "", ratings: {}, pairs: {}};
const save = () => localStorage.setItem(storeKey, JSON.stringify(state));

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

for (const line of data.instructions) document.getElementById("instructions").append(el("li", {}, line));

function noteBox(entry, attrs) {
  const box = el("textarea", Object.assign({placeholder: "note (optional)"}, attrs));
  box.value = entry.note || "";
  box.addEventListener("input", () => { entry.note = box.value; save(); });
  return box;
}

const rateView = document.getElementById("rate-view");
for (const item of data.samples) {
  const card = el("div", {class: "card", id: "sample-" + item.id});
  card.append(el("h3", {}, item.id), el("div", {class: "prompt"}, "Prompt: " + item.prompt),
              el("div", {class: "text"}, item.text));
  const entry = state.ratings[item.id] || (state.ratings[item.id] = {});
  for (const criterion of Object.keys(data.criteria)) {
    const row = el("div", {class: "criterion"});
    row.append(el("span", {title: data.criteria[criterion]}, criterion));
    for (let value = 1; value <= 5; value++) {
      const button = el("button", {class: "rate", "data-id": item.id, "data-criterion": criterion,
                                   "data-value": value, "aria-pressed": String(entry[criterion] === value)}, value);
      button.addEventListener("click", () => {
        entry[criterion] = entry[criterion] === value ? undefined : value;  // a second click clears
        row.querySelectorAll("button").forEach(
          b => b.setAttribute("aria-pressed", String(Number(b.dataset.value) === entry[criterion])));
        save(); progress();
      });
      row.append(button);
    }
    card.append(row);
  }
  card.append(noteBox(entry, {class: "note", "data-id": item.id}));
  rateView.append(card);
}

const pairsView = document.getElementById("pairs-view");
const byId = Object.fromEntries(data.samples.map(s => [s.id, s]));
const choiceLabels = {left: "A is better", tie: "Tie", right: "B is better"};
for (const pair of data.pairs) {
  const card = el("div", {class: "card", id: "pair-" + pair.id});
  const entry = state.pairs[pair.id] || (state.pairs[pair.id] = {});
  card.append(el("h3", {}, pair.id), el("div", {class: "prompt"}, "Prompt: " + byId[pair.left].prompt));
  const side = el("div", {class: "side"});
  side.append(el("div", {class: "text"}, "A\n\n" + byId[pair.left].text),
              el("div", {class: "text"}, "B\n\n" + byId[pair.right].text));
  card.append(side);
  const row = el("div", {class: "criterion"});
  for (const [choice, label] of Object.entries(choiceLabels)) {
    const button = el("button", {class: "choice", "data-pair": pair.id, "data-choice": choice,
                                 "aria-pressed": String(entry.choice === choice)}, label);
    button.addEventListener("click", () => {
      entry.choice = entry.choice === choice ? undefined : choice;
      row.querySelectorAll("button").forEach(
        b => b.setAttribute("aria-pressed", String(b.dataset.choice === entry.choice)));
      save(); progress();
    });
    row.append(button);
  }
  card.append(row, noteBox(entry, {class: "pair-note", "data-pair": pair.id}));
  pairsView.append(card);
}

function progress() {
  const rated = data.samples.filter(s => Object.keys(data.criteria).some(c => state.ratings[s.id][c])).length;
  const chosen = data.pairs.filter(p => state.pairs[p.id].choice).length;
  document.getElementById("progress").textContent =
    `${rated} of ${data.samples.length} samples rated, ${chosen} of ${data.pairs.length} pairs compared`;
}
progress();

function mode(pairs) {
  rateView.classList.toggle("hidden", pairs);
  pairsView.classList.toggle("hidden", !pairs);
  document.getElementById("mode-rate").setAttribute("aria-pressed", String(!pairs));
  document.getElementById("mode-pairs").setAttribute("aria-pressed", String(pairs));
}
document.getElementById("mode-rate").addEventListener("click", () => mode(false));
document.getElementById("mode-pairs").addEventListener("click", () => mode(true));

const reviewer = document.getElementById("reviewer");
reviewer.value = state.reviewer;
reviewer.addEventListener("input", () => { state.reviewer = reviewer.value; save(); });

document.getElementById("export").addEventListener("click", () => {
  if (!state.reviewer.trim()) {  // scoring keeps one rating per reviewer: a file needs a name
    document.getElementById("export-help").textContent = "Enter your name first (Your name, at the top).";
    document.getElementById("export-text").value = "";
    document.getElementById("export-view").classList.remove("hidden");
    reviewer.focus();
    return;
  }
  const ratings = [], pairs = [];
  for (const item of data.samples) {
    const entry = state.ratings[item.id], row = {id: item.id};
    for (const c of Object.keys(data.criteria)) if (entry[c]) row[c] = entry[c];
    if (Object.keys(row).length > 1 || entry.note) ratings.push(Object.assign(row, {note: entry.note || ""}));
  }
  for (const pair of data.pairs) {
    const entry = state.pairs[pair.id];
    if (entry.choice)
      pairs.push({id: pair.id, left: pair.left, right: pair.right, choice: entry.choice, note: entry.note || ""});
  }
  const exported = new Date().toISOString();
  const who = state.reviewer.trim().replace(/[^A-Za-z0-9_-]+/g, "-") || "reviewer";
  const name = who + "-" + exported.slice(0, 10) + ".json";
  const body = JSON.stringify({format: data.format, sheet: data.sheet, reviewer: state.reviewer, exported,
                               criteria: Object.keys(data.criteria), ratings, pairs}, null, 1) + "\n";
  const link = el("a", {href: URL.createObjectURL(new Blob([body], {type: "application/json"})), download: name});
  document.body.append(link); link.click(); link.remove();
  document.getElementById("export-help").textContent =
    `Downloaded ${name}. Move it into the reviews/ folder at the top of the project (no pipeline run touches it), ` +
    `then run: python stages/evaluate.py score reviews/${name}. ` +
    "If the download was blocked, copy the text below into that file.";
  document.getElementById("export-text").value = body;
  document.getElementById("export-view").classList.remove("hidden");
});
</script>
</body>
</html>
"""


def render_page(payload: dict) -> str:
    """The page with `payload` embedded; `<` is escaped so sample text cannot close the script block."""
    data = json.dumps(payload, ensure_ascii=False).replace("<", "\\u003c")
    return PAGE.replace("__DATA__", data)


def instructions(criteria: dict[str, str], note: str = "") -> list[str]:
    """What a reviewer reads first; `note` says which set of criteria this is and why (auto criteria)."""
    return [
        "Rate each sample from 1 to 5 on each criterion: " + SCALE + ".",
        *(f"{name}: {question}" for name, question in criteria.items()),
        *([note] if note else []),
        "Judge the text on its own; the models behind the ids are hidden on purpose. Compare pairs: two "
        "samples for the same prompt and seed; pick the better one or a tie.",
        "Open index.html in a browser; ratings are kept in this browser as you go. When done, enter your name, "
        "export them and "
        "save the file under reviews/ at the top of the project (not under reports/, which a rerun replaces), "
        "then run: python stages/evaluate.py score reviews/<file>.json",
    ]


def readme(criteria: dict[str, str], note: str = "") -> str:
    lines = [
        "# Blind review",
        "",
        "index.html: the review page (ratings and pairwise comparisons).",
        "sheet.csv: the same samples, one per row, for a spreadsheet; sheet.html: a printable table.",
        "",
    ]
    lines += [f"- {line}" for line in instructions(criteria, note)]
    lines += [
        "- A filled sheet.csv scores too: copy it under reviews/ as <your name>.csv first, then score that copy "
        "(its last columns, sheet and hash, tie each row to its sample: leave them as they are).",
        "",
        "Do not open data/review_key.csv (which model wrote which id) before you have finished.",
        "",
    ]
    return "\n".join(lines)


def render_html(sheet: list[dict], criteria: dict[str, str], note: str = "") -> str:
    """A printable static table of the sheet; every piece of sample text is HTML-escaped."""
    esc = html.escape
    items = "\n".join(f"<li>{esc(line)}</li>" for line in instructions(criteria, note))
    rows = "\n".join(
        f"<tr><td>{esc(row['id'])}</td><td><pre>{esc(row['prompt'])}</pre></td>"
        f"<td><pre>{esc(row['text'])}</pre></td>" + "".join("<td></td>" for _ in criteria) + "</tr>"
        for row in sheet
    )
    headers = "".join(f"<th>{esc(name)}</th>" for name in ("id", "prompt", "text", *criteria))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Blind review sheet</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #999; padding: 0.4em; vertical-align: top; }}
td:nth-child(n+4) {{ min-width: 6em; }}
pre {{ white-space: pre-wrap; margin: 0; font-family: serif; max-width: 40em; }}
</style>
</head>
<body>
<h1>Blind review sheet</h1>
<ul>
{items}
</ul>
<table>
<tr>{headers}</tr>
{rows}
</table>
</body>
</html>
"""
