"""Claim paths: what a claimed path or glob covers, and when two claims overlap.

A claim names a path relative to the repository root, in git's spelling
(``/`` separators, no ``.`` or ``..`` parts). Rules, decided once here:

- A literal path covers itself and everything under it: ``src`` and ``src/``
  both cover ``src/a.py`` (a claim cannot tell a file from a directory that does
  not exist yet, and a directory claim that let its files through would be no claim).
- Globs: ``*`` is any run of characters within one path part, ``?`` one
  character within a part, ``**`` any run across parts (``src/**/x.py`` covers
  ``src/x.py`` too). Every other character is literal, ``[`` and ``]`` included
  (``app/[id]/page.tsx`` is a real Next.js path, not a character class). A glob
  covers what it matches and everything under it, like a literal.
- Two claims overlap when some path is covered by both. For globs that is decided
  exactly, by walking both patterns at once (an intersection of two small
  automata over the characters they mention), so it is conservative by
  construction: it never says "no overlap" where a path covered by both exists.
  The cheap cases (two literals; a literal and a glob) never build automata.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Iterator

__all__ = [
    "MAX_PATH_LENGTH",
    "PathRefused",
    "covers",
    "is_glob",
    "normalise",
    "overlap",
]

MAX_PATH_LENGTH = 1024
_WILD = "*?"


class PathRefused(ValueError):
    """A claim path that cannot be used (the message says why and what is allowed)."""


def is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in _WILD)


def normalise(path: str, root: str | None = None) -> str:
    """A claim path in its one spelling, relative to the repository root.

    An absolute path inside ``root`` is made relative; one outside it, a path that
    climbs out with ``..``, an empty path or one with NUL or a line break is refused.
    A trailing ``/`` is dropped (a literal covers what is under it anyway).
    """
    raw = path.strip().replace("\\", "/")
    if not raw:
        raise PathRefused("an empty path; name a file, a directory or a glob in the repository")
    if any(ch in raw for ch in "\0\n\r"):
        raise PathRefused(f"{path!r} holds a NUL or a line break")
    if raw.startswith("/"):
        if root is None:
            raise PathRefused(f"{path!r} is absolute; outside a repository paths cannot be claimed")
        base = root.rstrip("/")
        if raw != base and not raw.startswith(base + "/"):
            raise PathRefused(f"{path!r} is outside the repository {root}")
        raw = raw[len(base) :].lstrip("/") or "."
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        cleaned = posixpath.normpath(raw)
        if cleaned == ".." or cleaned.startswith("../"):
            raise PathRefused(f"{path!r} climbs out of the repository")
        parts = [p for p in cleaned.split("/") if p not in ("", ".")]
    if not parts:
        raise PathRefused(
            f"{path!r} is the whole repository; claim its directories or files (or '**')"
        )
    out = "/".join(parts)
    if len(out) > MAX_PATH_LENGTH:
        raise PathRefused(f"a path of {len(out)} characters; at most {MAX_PATH_LENGTH}")
    return out


# -- matching ------------------------------------------------------------------------


def _tokens(pattern: str) -> list[str]:
    """A pattern as tokens: single literal characters, '?', '*', '**' and '**/'."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            j = i
            while j < len(pattern) and pattern[j] == "*":
                j += 1
            if j - i >= 2:
                if j < len(pattern) and pattern[j] == "/" and (i == 0 or pattern[i - 1] == "/"):
                    out.append("**/")
                    j += 1
                else:
                    out.append("**")
            else:
                out.append("*")
            i = j
        else:
            out.append(ch)
            i += 1
    return out


@functools.lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    parts: list[str] = []
    for tok in _tokens(pattern):
        if tok == "**/":
            parts.append("(?:.*/)?")
        elif tok == "**":
            parts.append(".*")
        elif tok == "*":
            parts.append("[^/]*")
        elif tok == "?":
            parts.append("[^/]")
        else:
            parts.append(re.escape(tok))
    # Everything under what it matches, too.
    return re.compile("".join(parts) + "(?:/.*)?", re.DOTALL)


def covers(pattern: str, path: str) -> bool:
    """Whether a claim of ``pattern`` covers the file ``path`` (both normalised)."""
    if not is_glob(pattern):
        return path == pattern or path.startswith(pattern + "/")
    return _regex(pattern).fullmatch(path) is not None


def _literal_prefix(pattern: str) -> str:
    cut = min((pattern.find(ch) for ch in _WILD if ch in pattern), default=len(pattern))
    return pattern[:cut]


def overlap(a: str, b: str) -> bool:
    """Whether some path is covered by both claims ``a`` and ``b`` (both normalised)."""
    glob_a, glob_b = is_glob(a), is_glob(b)
    if not glob_a and not glob_b:
        return covers(a, b) or covers(b, a)
    if not glob_b:
        a, b, glob_a, glob_b = b, a, glob_b, glob_a
    if not glob_a:
        # A literal against a glob: the glob covers the literal or something under it.
        if covers(b, a):
            return True
        pa, pb = a + "/", _literal_prefix(b)
        if not (pb.startswith(pa) or pa.startswith(pb)):
            return False
        return _intersect(a, b)
    pa, pb = _literal_prefix(a), _literal_prefix(b)
    if not (pa.startswith(pb) or pb.startswith(pa)):
        return False  # the literal parts before the first wildcard already differ
    return _intersect(a, b)


# -- the exact test for globs -------------------------------------------------------------

# An automaton state is an index into the token list; a token's moves:
#   literal c: on c to i+1;  '?': on any but '/' to i+1;  '*': stay on any but '/', or skip;
#   '**': stay on anything, or skip;  '**/': skip, or enter a "(.*/)" loop (state -i-1).
# After the last token comes the "under it" tail: accept, or on '/' into a loop on anything.


class _Automaton:
    def __init__(self, pattern: str) -> None:
        self.tokens = _tokens(pattern)
        self.end = len(self.tokens)

    def closure(self, states: frozenset[int]) -> frozenset[int]:
        out = set(states)
        todo = list(states)
        while todo:
            s = todo.pop()
            if 0 <= s < self.end and self.tokens[s] in ("*", "**", "**/") and s + 1 not in out:
                out.add(s + 1)
                todo.append(s + 1)
        return frozenset(out)

    def step(self, states: frozenset[int], ch: str) -> frozenset[int]:
        nxt: set[int] = set()
        tail = self.end + 1  # inside the "/anything" after the whole pattern
        for s in states:
            if s == tail:
                nxt.add(tail)
            elif s == self.end:
                if ch == "/":
                    nxt.add(tail)
            elif s < 0:  # inside a '**/' loop that began at token -s-1
                start = -s - 1
                nxt.add(s)
                if ch == "/":
                    nxt.add(start + 1)
            else:
                tok = self.tokens[s]
                if tok == "**/":
                    nxt.add(-s - 1)
                    if ch == "/":
                        nxt.add(s + 1)
                elif tok == "**":
                    nxt.add(s)
                elif tok == "*":
                    if ch != "/":
                        nxt.add(s)
                elif tok == "?":
                    if ch != "/":
                        nxt.add(s + 1)
                elif tok == ch:
                    nxt.add(s + 1)
        return self.closure(frozenset(nxt))

    def accepts(self, states: frozenset[int]) -> bool:
        return self.end in states or self.end + 1 in states

    def literals(self) -> Iterator[str]:
        for tok in self.tokens:
            if tok not in ("*", "**", "**/", "?"):
                yield tok


def _intersect(a: str, b: str) -> bool:
    """Whether the languages of two patterns (with their "under it" tails) intersect.

    The alphabet that matters is the characters either pattern names, '/', and one
    character neither names (every other character behaves like it).
    """
    fa, fb = _Automaton(a), _Automaton(b)
    alphabet = {"/", *fa.literals(), *fb.literals()}
    other = next(ch for ch in "\x01\x02\x03abcdefghijklmnopqrstuvwxyz0123456789" if ch not in alphabet)
    alphabet.add(other)
    start = (fa.closure(frozenset({0})), fb.closure(frozenset({0})))
    seen = {start}
    todo = [start]
    while todo:
        sa, sb = todo.pop()
        if fa.accepts(sa) and fb.accepts(sb):
            return True
        for ch in alphabet:
            na, nb = fa.step(sa, ch), fb.step(sb, ch)
            if na and nb and (na, nb) not in seen:
                seen.add((na, nb))
                todo.append((na, nb))
    return False
