"""Cleaning text that agents store and other agents' models read (standard library only).

Control characters, bidirectional overrides and isolates, zero-width characters
and Unicode tag characters are removed wherever peers stores text: message
bodies, summaries, names, file lists. None of them shows on a screen, and each
can make text read differently to a model than to a human (tag characters
U+E0000-E007F spell hidden ASCII instructions; overrides reorder what is shown).
The hook path imports this module, so it stays free of third-party imports.
"""

from __future__ import annotations

import re

__all__ = ["INVISIBLE", "clean_text"]

# One class, so cleaning is a single pass of the regex engine.
INVISIBLE = re.compile(
    "["
    "\x00-\x08\x0b-\x1f\x7f-\x9f"  # C0 and C1 controls, DEL (newline and tab stay)
    "\u200b-\u200f"  # zero-width space, non-joiner, joiner; LRM, RLM
    "\u202a-\u202e"  # bidi embeddings and overrides
    "\u2060-\u2064"  # word joiner, invisible operators
    "\u2066-\u2069"  # bidi isolates
    "\ufeff"  # zero-width no-break space (BOM)
    "\U000e0000-\U000e007f"  # tag characters
    "]"
)


def clean_text(text: str) -> str:
    """``text`` without control (other than newline and tab) and invisible characters."""
    return INVISIBLE.sub("", text)
