"""The HTML of vaultctl's pages (the compliance report, the breach scope): one style, every
value escaped, tables and accessible SVG bar charts, and the page head with a
Content-Security-Policy that forbids scripts and external resources."""

from __future__ import annotations

import html

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1b1f24;
 padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}
h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccd}
table{border-collapse:collapse;width:100%;margin:.5em 0}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e3e6ea}
th{background:#f3f5f7}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#116329;font-weight:600}
.bad{color:#b3261e;font-weight:600}
.warn{color:#8a5300;font-weight:600}
.muted{color:#59636e}
.cards{display:flex;gap:1em;flex-wrap:wrap}
.card{border:1px solid #d8dde3;border-radius:6px;padding:.6em 1em;min-width:10em}
.card b{display:block;font-size:1.5em}
svg text{font:11px system-ui,sans-serif;fill:#1b1f24}
"""


def esc(value: object) -> str:
    """``value`` as HTML text or attribute (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def table(headers: list[str], rows: list[list[object]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    """A table of escaped values (``numeric``: the columns aligned right)."""
    titles = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{esc(v)}</td>' if i in numeric else f"<td>{esc(v)}</td>"
            for i, v in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    if not rows:
        body = f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>'
    return f"<table><thead><tr>{titles}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart_svg(title: str, labels: list[str], values: list[int], vertical: bool) -> str:
    """An accessible SVG bar chart (role=img, a title, one <rect> per bar with its value)."""
    top = max(values, default=0) or 1
    if vertical:  # one column per label (days)
        width, height, pad = 960, 220, 30
        step = (width - 2 * pad) / max(len(values), 1)
        bars = []
        for i, (label, v) in enumerate(zip(labels, values, strict=True)):
            h = (height - 2 * pad) * v / top
            x = pad + i * step
            bars.append(
                f'<rect class="bar" x="{x + 2:.1f}" y="{height - pad - h:.1f}" width="{step - 4:.1f}"'
                f' height="{h:.1f}" fill="#3b6fb6"><title>{esc(label)}: {v}</title></rect>'
            )
            if v:
                bars.append(
                    f'<text x="{x + step / 2:.1f}" y="{height - pad - h - 3:.1f}"'
                    f' text-anchor="middle">{v}</text>'
                )
            if i % 5 == 0:
                bars.append(f'<text x="{x:.1f}" y="{height - 10}">{esc(label[5:])}</text>')
    else:  # one row per label (categories)
        row, pad, label_w, width = 22, 10, 210, 960
        height = pad * 2 + row * max(len(values), 1)
        bars = []
        for i, (label, v) in enumerate(zip(labels, values, strict=True)):
            w = (width - label_w - 80) * v / top
            y = pad + i * row
            bars.append(f'<text x="0" y="{y + 15}">{esc(label)}</text>')
            bars.append(
                f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}"'
                f' fill="#2f8f5b"><title>{esc(label)}: {v}</title></rect>'
            )
            bars.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{v}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{esc(title)}"'
        f' viewBox="0 0 {width} {height}" width="100%"><title>{esc(title)}</title>'
        + "".join(bars)
        + "</svg>"
    )


def head(title: str) -> list[str]:
    """The start of a self-contained page: no script, no external resource."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
        " style-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
    ]
