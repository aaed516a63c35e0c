"""docs/runbooks.md as the HTML page alert links open locally, with GitHub's heading anchors."""

from __future__ import annotations

import re

import markdown


def github_anchor(heading: str, separator: str = "-") -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", separator)


def html(text: str) -> str:
    body = markdown.markdown(text, extensions=["tables", "fenced_code", "toc"], extension_configs={
        "toc": {"slugify": github_anchor}
    })  # fmt: skip
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Runbooks</title></head>\n'
        f"<body>\n{body}\n</body></html>\n"
    )
