"""Claim paths and the claims rules: spelling, coverage, overlap, decisions (no store)."""

from __future__ import annotations

import itertools
import re

import pytest

from peers import claimpaths, claimrules
from peers.claimpaths import PathRefused, covers, normalise, overlap
from peers.errors import InvalidInput
from peers.models import Claim, ClaimRequest


@pytest.mark.parametrize(
    ("raw", "spelled"),
    [("src/a.py", "src/a.py"), ("./src//a.py", "src/a.py"), ("src/", "src"), ("a\\b.py", "a/b.py"),
     ("src/x/../a.py", "src/a.py"), ("/repo/src/a.py", "src/a.py"), ("app/[id]/page.tsx", "app/[id]/page.tsx")],
)  # fmt: skip
def test_normalise(raw: str, spelled: str) -> None:
    assert normalise(raw, "/repo") == spelled


@pytest.mark.parametrize(
    ("raw", "why"),
    [("", "empty"), ("../x", "climbs out"), ("/etc/passwd", "outside the repository"),
     ("a\nb", "line break"), (".", "whole repository"), ("/repo", "whole repository")],
)  # fmt: skip
def test_normalise_refuses_with_the_reason(raw: str, why: str) -> None:
    with pytest.raises(PathRefused, match=why):
        normalise(raw, "/repo")


@pytest.mark.parametrize(
    ("pattern", "path", "covered"),
    [("src", "src/a.py", True), ("src", "srcx/a.py", False), ("src/a.py", "src/a.py", True),
     ("src/*.py", "src/a.py", True), ("src/*.py", "src/sub/a.py", False), ("**/*.py", "a/b/c.py", True),
     ("src/**/x.py", "src/x.py", True), ("src/a?.py", "src/ab.py", True), ("src/a?.py", "src/a/b.py", False),
     ("app/[id]", "app/[id]/page.tsx", True), ("app/[id]", "app/i/page.tsx", False), ("docs/*", "docs/a/b.md", True)],
)  # fmt: skip
def test_covers(pattern: str, path: str, covered: bool) -> None:
    assert covers(pattern, path) is covered


@pytest.mark.parametrize(
    ("a", "b", "overlapping"),
    [("src", "src/a.py", True), ("*.py", "*.ts", False), ("src/*", "src/a/**", True),
     ("docs/**", "src/**", False), ("a/*/c", "a/b/*", True), ("src/*.py", "src/x/a.py", False),
     ("**/test_*.py", "tests/unit/*.py", True), ("src/**/*.ts", "lib/*.py", False), ("src/**/*.ts", "src/*.py", True), ("?", "ab", False)],
)  # fmt: skip
def test_overlap(a: str, b: str, overlapping: bool) -> None:
    # A glob covers what is under its matches too: src/*.py and src/**/*.ts meet in
    # src/x.py/y.ts (a directory named x.py), so they overlap.
    assert overlap(a, b) is overlapping and overlap(b, a) is overlapping


def test_overlap_is_conservative_against_brute_force() -> None:
    # Every path over a small alphabet covered by both must be found; no overlap claimed
    # where no such path of any length exists is not checked (the exact test is exact).
    alphabet = "ab/."
    patterns = ["a", "a/*", "*/b", "**/b", "a/**", "?/b", "*.a", "a*", "**", "b/?"]
    paths = ["".join(p) for n in range(1, 6) for p in itertools.product(alphabet, repeat=n)]
    paths = [p for p in paths if not p.startswith("/") and not p.endswith("/") and "//" not in p]
    for a, b in itertools.combinations(patterns, 2):
        both = any(covers(a, p) and covers(b, p) for p in paths)
        if both:
            assert overlap(a, b), (a, b)


def test_covers_agrees_with_a_plain_regex_for_literals() -> None:
    assert covers("a.b", "a.b") and not covers("a.b", "axb")
    assert re.escape("a.b") == "a\\.b"


def _claim(holder: str, path: str, exclusive: bool = True, auto: bool = False) -> Claim:
    return Claim(holder_id=holder, repo="r", path=path, exclusive=exclusive, auto=auto,
                 expires_at=2e9, ttl=100)  # fmt: skip


def test_decide_grants_refuses_and_shares() -> None:
    counted = [_claim("a", "src/api.py"), _claim("a", "lib", exclusive=False)]
    request = ClaimRequest(holder_id="b", repo="r", paths=("src/api.py", "lib/x.py", "new.py"),
                           exclusive=False)  # fmt: skip
    result, writes = claimrules.decide(request, counted, now=1000.0)
    assert [g.path for g in result.granted] == ["lib/x.py", "new.py"]
    assert [(c.path, c.claim.path) for c in result.conflicts] == [("src/api.py", "src/api.py")]
    assert [(s.path, s.claim.path) for s in result.shared_with] == [("lib/x.py", "lib")]
    assert sorted(w.path for w in writes) == ["lib/x.py", "new.py"]


def test_an_auto_claim_never_narrows_the_holders_own_claim() -> None:
    mine = _claim("a", "src").model_copy(update={"expires_at": 1010.0})
    request = ClaimRequest(holder_id="a", repo="r", paths=("src/x.py",), exclusive=False, auto=True)
    result, writes = claimrules.decide(request, [mine], now=1000.0)
    assert [(w.path, w.exclusive, w.expires_at) for w in writes] == [("src", True, 1100.0)]
    assert result.granted == tuple(writes)
    # Renewed a moment ago: the next edit writes nothing.
    again, none = claimrules.decide(request, writes, now=1001.0)
    assert none == [] and [g.path for g in again.granted] == ["src"]


def test_check_request_names_the_problem() -> None:
    with pytest.raises(InvalidInput, match="refused"):
        claimrules.check_request(ClaimRequest(holder_id="a", repo="r", paths=("../x",)))
    assert claimpaths.is_glob("a/*") and not claimpaths.is_glob("a/[b]")
