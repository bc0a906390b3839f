"""One self-contained HTML page from the pack's Markdown documents.

Everything is inline: the CSS, and the charts as ``data:`` images. A
Content-Security-Policy meta tag (``default-src 'none'``) makes the browser
refuse any fetch, and links or images pointing off the page are turned into
plain text, so opening the page loads nothing from the network. Raw HTML in
the Markdown (from a template or a config value) is escaped, not rendered.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence

__all__ = ["CSP", "markdown_to_html", "render_page"]

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
body{font:14px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1b1b}
nav{position:fixed;top:0;left:0;bottom:0;width:230px;overflow:auto;background:#f3f2f1;
padding:16px;box-sizing:border-box;border-right:1px solid #ccc}
nav a{display:block;color:#1d70b8;text-decoration:none;padding:2px 0}
main{margin-left:250px;padding:16px 32px;max-width:1100px}
section{border-bottom:2px solid #ddd;padding-bottom:24px;margin-bottom:24px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #bbb;padding:3px 8px;
vertical-align:top;text-align:left}th{background:#f3f2f1}
code{background:#f3f2f1;padding:0 3px;font-size:12px;word-break:break-all}
pre{background:#f3f2f1;padding:8px;overflow:auto}pre code{padding:0}
img{max-width:100%;height:auto;border:1px solid #eee}
.badge{display:inline-block;padding:2px 8px;border-radius:4px;background:#2e8540;color:#fff}
.bad{background:#c0392b}
"""

_EXTERNAL_LINK = re.compile(r'<a href="(?:https?:|//|ftp:)[^"]*"[^>]*>(.*?)</a>', re.DOTALL)
_EXTERNAL_IMG = re.compile(r'<img src="(?:https?:|//|ftp:)[^"]*"[^>]*>')
_LOCAL_LINK = re.compile(r'<a href="(?!#)([^"]*)"[^>]*>(.*?)</a>', re.DOTALL)


def markdown_to_html(text: str, images: Mapping[str, str]) -> str:
    """Markdown to an HTML fragment; ``images`` maps a chart's path to its SVG text."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    out = md.render(text)
    for path, svg in images.items():
        data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
        out = out.replace(f'src="{html.escape(path)}"', f'src="data:image/svg+xml;base64,{data}"')
    out = _EXTERNAL_IMG.sub("[image removed: external]", out)
    out = _EXTERNAL_LINK.sub(r"\1", out)
    # Links to other files of the pack: the page holds them all, so keep the text only.
    return _LOCAL_LINK.sub(r"\2", out)


def render_page(
    title: str, sections: Sequence[tuple[str, str, str]], *, status: tuple[str, bool]
) -> str:
    """The page: a navigation column and one section per (anchor, heading, HTML fragment)."""
    nav = "\n".join(
        f'<a href="#{html.escape(anchor)}">{html.escape(heading)}</a>'
        for anchor, heading, _ in sections
    )
    body = "\n".join(
        f'<section id="{html.escape(anchor)}">\n{fragment}\n</section>'
        for anchor, _, fragment in sections
    )
    label, ok = status
    badge = f'<span class="badge{"" if ok else " bad"}">{html.escape(label)}</span>'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<nav><strong>{html.escape(title)}</strong><p>{badge}</p>\n{nav}\n</nav>\n"
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
