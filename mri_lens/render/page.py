"""What every offline report page is built of: the page (title, links, HTML parts, figures with plotly.js inlined or
shared), tables of escaped cells, DataFrames as tables, the label counts of a scan."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from .html import escape, figure_html, links_html, write_page
from .links import SiteLinks

__all__ = ["Page", "Html", "table", "df_html", "fmt", "scan_label_counts"]


class Html(str):
    """A table cell that is HTML already (built from escaped parts), written as is."""


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{v if isinstance(v, Html) else escape(fmt(v))}</td>" for v in r)
                   + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return f"{v:.3g}"
    return str(v)


class Page:
    """One offline report page: a title, optional links, HTML parts and figures (plotly.js from the page shell:
    inlined once, or the shared asset of ``assets``), so the page never loads anything from the network."""

    def __init__(self, title: str, links: Sequence[tuple[str, str]] = (), site: SiteLinks | None = None):
        self.title = title
        self.site = site
        self.parts = [f"<h1>{escape(title)}</h1>", links_html(links)]

    def figure(self, fig) -> str:
        return figure_html(fig)

    def write(self, path: str | os.PathLike, overwrite: bool = False, assets: str | os.PathLike | None = None,
              owned: bool = False) -> str:
        return write_page(path, self.title, "\n".join(self.parts), plotly="asset" if assets is not None else "inline",
                          assets=assets, overwrite=overwrite, owned=owned)


def scan_label_counts(scan) -> dict[str, int]:
    if scan.labels is None:
        return {}
    c = np.bincount(scan.labels, minlength=len(scan.label_names))
    return {n: int(k) for n, k in zip(scan.label_names, c)}


def df_html(df, n: int | None = None) -> str:
    """A DataFrame as an HTML table; pandas escapes every cell."""
    if n is not None:
        df = df.head(n)
    return ("<div class='wide'>" + df.to_html(index=False, escape=True, float_format=lambda v: f"{v:.3g}", border=0,
                                              na_rep="") + "</div>")
