"""One id and one address per neuron and per MRI region, shared by every page mri_lens writes.

A neuron is ``L{layer}/N{neuron}`` (model layer number, neuron id within the layer: integers). Its page is the
Neuroscope site's viewer at ``{site}/index.html#L{layer}/N{neuron}`` (one viewer renders every neuron from data
files, so the fragment is the page). An MRI region has the anchor ``region-L{layer}-R{region}`` on the MRI page.

:class:`SiteLinks` answers "which neurons have a page, and where": it reads a site's ``manifest.json`` (which
lists the layers and neuron ids the site holds), so a link is written only to a page that exists.

>>> neuron_href("../site", 1, 88)
'../site/index.html#L1/N88'
>>> parse_neuron_fragment("L1/N88")
(1, 88)
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from .html import escape

__all__ = ["NEURON_FRAGMENT_RE", "SiteLinks", "neuron_fragment", "neuron_href", "neuron_id", "neuron_link_html",
           "parse_neuron_fragment", "region_anchor", "site_links"]

NEURON_FRAGMENT_RE = re.compile(r"^L(\d+)/N(\d+)$")


def neuron_id(layer: int, neuron: int) -> str:
    """The text id of a neuron on every page: ``"L1/N88"``."""
    return f"L{int(layer)}/N{int(neuron)}"


def neuron_fragment(layer: int, neuron: int) -> str:
    """The URL fragment of a neuron's page in the site viewer (same as its id)."""
    return neuron_id(layer, neuron)


def parse_neuron_fragment(fragment: str) -> tuple[int, int] | None:
    """``"L1/N88"`` (with or without a leading ``#``) -> ``(1, 88)``; anything else -> None."""
    m = NEURON_FRAGMENT_RE.match(fragment.lstrip("#"))
    return (int(m.group(1)), int(m.group(2))) if m else None


def neuron_href(site: str, layer: int, neuron: int) -> str:
    """Relative URL of a neuron's page, ``site`` being the site directory relative to the linking page."""
    base = site.rstrip("/")
    return (f"{base}/" if base else "") + f"index.html#{neuron_fragment(layer, neuron)}"


def region_anchor(layer: int, region: int) -> str:
    """The HTML id of an MRI region on the MRI page: ``"region-L2-R37"``."""
    return f"region-L{int(layer)}-R{int(region)}"


@dataclass(frozen=True)
class SiteLinks:
    """Links to the neuron pages of one Neuroscope site, as seen from another page.

    rel: the site directory relative to the linking page (``"../site"``); neurons: ``{layer: frozenset(ids)}`` the
    site holds (from its manifest).
    """

    rel: str
    neurons: dict[int, frozenset[int]] = field(default_factory=dict)

    @classmethod
    def from_site(cls, site_dir: str | os.PathLike, rel: str) -> "SiteLinks":
        """Read ``site_dir/manifest.json`` (a site's manifest: ``{"format": "mri_lens.site", "layers": {"<layer>":
        [neuron ids]}, ...}``; ``"kind"`` is read as well as ``"format"``)."""
        with open(os.path.join(os.fspath(site_dir), "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        kind = manifest.get("format", manifest.get("kind"))
        if kind != "mri_lens.site":
            raise ValueError(f"{site_dir} is not a Neuroscope site (manifest format {kind!r})")
        layers = manifest.get("layers", {})
        return cls(rel, {int(l): frozenset(int(n) for n in ids) for l, ids in layers.items()})

    @classmethod
    def for_page(cls, site_dir: str | os.PathLike, page: str | os.PathLike) -> "SiteLinks":
        """The site at ``site_dir`` as linked from the page file ``page`` (the relative path is worked out)."""
        page_dir = os.path.dirname(os.path.abspath(os.fspath(page)))
        rel = os.path.relpath(os.path.abspath(os.fspath(site_dir)), page_dir).replace(os.sep, "/")
        return cls.from_site(site_dir, rel)

    def has(self, layer: int, neuron: int) -> bool:
        return int(neuron) in self.neurons.get(int(layer), ())

    def href(self, layer: int, neuron: int) -> str | None:
        """The page's URL, or None when the site has no page for this neuron."""
        return neuron_href(self.rel, layer, neuron) if self.has(layer, neuron) else None


def site_links(site: "SiteLinks | str | os.PathLike | None", page: str | os.PathLike) -> SiteLinks | None:
    """What a page writer's ``site=`` argument means: None (no links), a :class:`SiteLinks` (used as given: its
    ``rel`` is relative to ``page``), or a site directory (read, linked relatively from the file ``page``)."""
    if site is None or isinstance(site, SiteLinks):
        return site
    return SiteLinks.for_page(site, page)


def neuron_link_html(site: SiteLinks | None, layer: int, neuron: int, text: str | None = None) -> str:
    """HTML for one neuron: ``text`` (default its id ``L1/N88``) escaped, as a link to its page when ``site`` has
    one, else plain text."""
    shown = escape(neuron_id(layer, neuron) if text is None else text)
    href = site.href(layer, neuron) if site is not None else None
    return f"<a class='neuron' href='{escape(href)}'>{shown}</a>" if href else shown
