"""What a console screen says, as text: the SVG screenshot without its markup."""

from __future__ import annotations

import html
import re

from textual.app import App


def screen_text(app: App[object]) -> str:
    svg = app.export_screenshot()
    lines = []
    for line in re.findall(r"<g[^>]*clip-path[^>]*>(.*?)</g>", svg, flags=re.S) or [svg]:
        lines.append(html.unescape(re.sub(r"<[^>]+>", "", line)).replace("\xa0", " "))
    return "\n".join(lines)
