"""The docs quote code and link to the line that holds it: check every such quote is there.

In docs/keras-to-pytorch.md a table cell like ``\\`optimizer.step()\\` ([training.py](../cnn_torch/training.py#L130))``
says that line 130 of training.py holds ``optimizer.step()``; when the code moves, the link
must move with it. The README's pdb recipe is checked in tests/test_learners_path.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUOTED_LINK = re.compile(r"`([^`]+)` \(\[[^\]]+\]\(\.\./([^)#]+)#L(\d+)\)\)")
DOCS = [ROOT / "docs" / "keras-to-pytorch.md"]


def quoted_links(doc: Path) -> list[tuple[str, str, int]]:
    return [(code, path, int(line)) for code, path, line in QUOTED_LINK.findall(doc.read_text())]


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_every_quoted_line_is_where_its_link_points(doc):
    links = quoted_links(doc)
    assert len(links) >= 15  # the "Inside fit" table alone has more
    for code, path, line in links:
        lines = (ROOT / path).read_text().splitlines()
        assert line <= len(lines) and code in lines[line - 1], (
            f"{doc.name}: `{code}` is not on line {line} of {path};"
            f" it is on line(s) {[i + 1 for i, text in enumerate(lines) if code in text]}"
        )


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_no_bare_line_links(doc):
    """A line link without the quoted code could drift silently: every one has its quote."""
    assert len(re.findall(r"#L\d+\)", doc.read_text())) == len(quoted_links(doc))
