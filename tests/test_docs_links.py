"""The documentation's relative links and images point at files the repository has, and its anchors at headings.

Anchors follow GitHub's rule for heading ids: the heading's text, lowercased, every character that is not a letter,
digit, space, hyphen or underscore dropped, spaces turned into hyphens, and `-1`, `-2`… added to repeats.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

from contract.paths import PROJECT_ROOT

# The README is the entry page: what it is, the two commands, the pipeline, the layout, the targets, links.
README_MAX_LINES = 250

DOCS = sorted([*PROJECT_ROOT.glob("*.md"), *(PROJECT_ROOT / "docs").glob("**/*.md")])

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+).*?\1")
# [text](target "title") and ![alt](target); the text may hold one level of brackets, e.g. [`x` [y]](z).
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(].*?[\"')])?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_TARGET = re.compile(r"<(?:a|img)\s[^>]*?(?:href|src)=[\"']([^\"']+)[\"']", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\s[^>]*?(?:id|name)=[\"']([^\"']+)[\"']", re.IGNORECASE)
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:...


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed: a link in code is an example, not a link."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(INLINE_CODE.sub("", line))
    return lines


def heading_text(markdown: str) -> str:
    """What GitHub renders of a heading: link and image text kept, code marks, `*` emphasis and HTML tags dropped
    (underscores stay: in snake_case they are part of the word)."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    return re.sub(r"[`*~]|<[^>]+>", "", text)


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading_text(heading).strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            continue
        found.update(HTML_ANCHOR.findall(line))
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        targets += INLINE_LINK.findall(line) + HTML_TARGET.findall(line)
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
    return [target for target in targets if not SCHEME.match(target) and not target.startswith("//")]


def git_ignored(path: Path) -> bool:
    """A link to an ignored file works here and breaks for everyone else."""
    try:
        result = subprocess.run(
            ["git", "check-ignore", "-q", str(path)], cwd=PROJECT_ROOT, capture_output=True, check=False
        )
    except OSError:  # no git: nothing to ask
        return False
    return result.returncode == 0


def broken(doc: Path, target: str) -> str | None:
    """Why `target`, as written in `doc`, does not resolve; None when it does."""
    file_part, _, anchor = target.partition("#")
    resolved = (doc.parent / unquote(file_part)).resolve() if file_part else doc
    if not resolved.is_relative_to(PROJECT_ROOT):
        return "points outside the repository"
    if not resolved.exists():
        return "no such file"
    if git_ignored(resolved):
        return "the file is ignored by git"
    if anchor and resolved.suffix == ".md" and unquote(anchor).lower() not in anchors(resolved):
        return f"no heading #{anchor} in {resolved.relative_to(PROJECT_ROOT)}"
    return None


def test_there_are_docs_to_check():
    names = {doc.relative_to(PROJECT_ROOT).as_posix() for doc in DOCS}
    assert {"README.md", "docs/design.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.relative_to(PROJECT_ROOT).as_posix())
def test_relative_links_resolve(doc):
    problems = [f"{target}: {why}" for target in links(doc) if (why := broken(doc, target))]
    assert not problems, f"{doc.relative_to(PROJECT_ROOT)} has broken links:\n" + "\n".join(problems)


def test_readme_is_an_entry_page():
    lines = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Export, parity and int8 (export/)", "export-parity-and-int8-export"),
        ("Metrics (`GET /metrics`)", "metrics-get-metrics"),
        ("Tuning: what was tried, what was kept", "tuning-what-was-tried-what-was-kept"),
        ("The contract: the ONNX file", "the-contract-the-onnx-file"),
        ("snake_case stays", "snake_case-stays"),
    ],
)
def test_slugs_follow_github(heading, expected):
    assert slug(heading) == expected


def test_a_broken_link_is_found(tmp_path):
    doc = PROJECT_ROOT / "docs" / "design.md"
    assert broken(doc, "../no/such/file.md") == "no such file"
    assert broken(doc, "design.md#no-such-heading") is not None
    assert broken(doc, "../README.md") is None
    assert broken(doc, "#what-may-import-what") is None
    assert links_of('[a](x.md) `[b](y.md)` ![c](z.png) [d](https://example.com) <img src="w.png">', tmp_path) == [
        "x.md",
        "z.png",
        "w.png",
    ]


def links_of(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "doc.md"
    path.write_text(text + "\n```\n[in a fence](f.md)\n```\n", encoding="utf-8")
    return links(path)
