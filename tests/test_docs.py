"""The reference the tests cite (docs/kernel-semantics.md) is in the repository, and every section
they cite exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "kernel-semantics.md"


def _cited_sections(text: str) -> set[int]:
    """Section numbers cited within 30 characters after 'docs/kernel-semantics.md', ranges
    (§1-§5) spread out."""
    out: set[int] = set()
    for m in re.finditer(r"docs/kernel-semantics\.md", text):
        for a, b in re.findall(r"§(\d+)(?:-§(\d+))?", text[m.end():m.end() + 30]):
            out.update(range(int(a), int(b or a) + 1))
    return out


def test_every_cited_section_exists() -> None:
    headings = {int(n) for n in re.findall(r"^## §(\d+)\.", REFERENCE.read_text(), re.M)}
    cited: dict[str, set[int]] = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        if path.name == Path(__file__).name:
            continue
        text = path.read_text()
        assert not re.search(r"(?<!docs/)kernel-semantics", text), \
            f"{path.name} cites the reference without its path in the repository"
        if sections := _cited_sections(text):
            cited[path.name] = sections
    assert {1, 2, 3, 4, 5, 7} <= cited["test_golden.py"]
    missing = {name: s - headings for name, s in cited.items() if s - headings}
    assert missing == {}


def test_the_citation_reader_reads_ranges() -> None:
    assert _cited_sections("(docs/kernel-semantics.md §1-§3, §7)") == {1, 2, 3, 7}
    assert _cited_sections("docs/kernel-semantics.md\n#: §1 and §4), written") == {1, 4}
