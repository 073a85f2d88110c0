"""Number formats and markdown pieces shared by the report's sections."""

from __future__ import annotations

import math
import re
from typing import Any

MAX_LISTED = 15  # longer lists (dropped documents, validation documents) are cut with "... and N more"


def num(value: Any) -> float:
    """JSON null (how a diverged run records its loss) reads as NaN."""
    return math.nan if value is None else float(value)


def fmt_loss(x: Any) -> str:
    return f"{num(x):.3f}"


def fmt_bpb(loss: Any, bytes_per_token: float | None) -> str:
    """A held-out loss in nats per token as bits per byte of the same text (the tokenizer-free measure)."""
    if not bytes_per_token:
        return "–"
    return f"{num(loss) / bytes_per_token / math.log(2):.3f}"


def fmt_ppl(x: Any) -> str:
    return f"{num(x):,.2f}"


def fmt_int(x: Any) -> str:
    return f"{int(x):,}"


def fmt_flops(x: Any) -> str:
    return f"{num(x):.2e}"


def fmt_seconds(x: Any) -> str:
    s = num(x)
    return f"{s:,.1f} s" + (f" ({s / 60:.1f} min)" if s >= 120 else "")


def fmt_short(x: Any) -> str:
    """134515008 -> 134.5M, for parameter counts a reader compares by eye."""
    n = num(x)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:g}"


def fmt_ratio(r: float) -> str:
    if r >= 100:
        return f"{r:,.0f}×"
    return f"{r:.1f}×" if r >= 1 else f"{r:.2f}×"


def listed(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f", … and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


def unavailable(*stages: str) -> str:
    names = " and ".join(f"`{s}`" for s in stages)
    return f"_Not available (stage {names} has not run)._"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def fenced(text: str) -> str:
    """A code fence longer than any backtick run inside the text, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def image(alt: str, link: str, name: str) -> str:
    return f"![{alt}]({link}/{name})"
