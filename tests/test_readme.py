"""The README stays an entry page. Its links, and every other Markdown file's, are checked by the link checker in
`make lint` (remark-validate-links, tools/lint.sh)."""

from __future__ import annotations

from contract.paths import PROJECT_ROOT

# The README is the entry page: what it is, the two commands, the pipeline, the layout, the targets, links.
README_MAX_LINES = 250


def test_readme_is_an_entry_page():
    lines = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
