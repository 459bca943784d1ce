"""One renderer for every page mri_lens writes: the page shell, the token escaper, JSON for HTML, the stylesheet,
link checks, plotly figures and the shared offline assets.

Pages never load anything from the network. plotly.js is either inlined once into a standalone page
(``plotly="inline"``: one file per report at most) or written once per output directory as
``assets/plotly-<version>.min.js`` and referenced relatively (``plotly="asset"``), which also works from
``file://``. Every text that reaches a page goes through :func:`escape` or :func:`escape_token`.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import unicodedata
from typing import Any, Sequence

from ..storage.write import PAGE_KIND, page_marker, save_text, write_file_atomic, write_text_atomic

__all__ = ["ASSETS_DIR", "CSS", "SITE_JS", "check_link_url", "code_point_marker", "escape", "escape_token",
           "figure_html", "json_for_html", "links_html", "page", "write_assets", "write_page"]

ASSETS_DIR = "assets"
N_LEVELS = 8  # colour levels per sign of the neuron pages' activation shading

# Narrow screens (a phone, 420 px): a table wider than the page scrolls inside its own box (display:block
# with overflow), never the page; images and figures shrink to the page's width.
CSS = """body{font-family:system-ui,sans-serif;margin:20px auto;max-width:1200px;padding:0 16px;color:#222;
font-size:14px}a{color:#1f5fa8}nav a{margin-right:12px}h1{font-size:22px}h2{font-size:18px;margin-top:32px}
table{border-collapse:collapse;margin:6px 0 16px;font-size:13px}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
th.sortable{cursor:pointer}th.sortable:after{content:" \\2195";color:#999}
.wide{overflow-x:auto}.tok{white-space:pre}.max{background:#f4a582;font-weight:bold}
.snip,.full{font-family:monospace;white-space:pre-wrap;word-break:break-all;font-size:12px}
.mx{outline:2px solid #000}mark{background:#fdae61}details summary{cursor:pointer;color:#555}
.muted{color:#777}.hist{background:#fafafa;border:1px solid #eee}.search{width:320px;max-width:100%;padding:3px}
.figure{margin:8px 0 20px;max-width:100%}
table{display:block;max-width:100%;overflow-x:auto}img{max-width:100%;height:auto}
pre{overflow-x:auto}
""" + "".join(
    f".p{i}{{background:rgba(215,48,31,{i / N_LEVELS:.3f})}}.n{i}{{background:rgba(33,102,172,{i / N_LEVELS:.3f})}}"
    for i in range(1, N_LEVELS + 1)) + "\n"

SITE_JS = """// mri_lens pages: table sorting and filtering, search over top tokens. No network.
(function(){
function cellValue(td){var v=td.getAttribute('data-v');return v===null?td.textContent:parseFloat(v);}
document.querySelectorAll('th.sortable').forEach(function(th){
  th.addEventListener('click',function(){
    var table=th.closest('table'),tbody=table.tBodies[0],idx=Array.prototype.indexOf.call(th.parentNode.children,th);
    var desc=th.getAttribute('data-dir')!=='desc';th.setAttribute('data-dir',desc?'desc':'asc');
    var rows=Array.prototype.slice.call(tbody.rows);
    rows.sort(function(a,b){var x=cellValue(a.cells[idx]),y=cellValue(b.cells[idx]);
      return (x<y?-1:x>y?1:0)*(desc?-1:1);});
    rows.forEach(function(r){tbody.appendChild(r);});
  });
});
var filter=document.getElementById('filter');
if(filter){filter.addEventListener('input',function(){var q=filter.value.toLowerCase();
  document.querySelectorAll('tr[data-tokens]').forEach(function(r){
    r.style.display=r.getAttribute('data-tokens').toLowerCase().indexOf(q)>=0?'':'none';});});}
var data=document.getElementById('search-data'),box=document.getElementById('search'),out=document.getElementById('results');
if(data&&box&&out){var items=JSON.parse(data.textContent);
  box.addEventListener('input',function(){var q=box.value.toLowerCase();out.textContent='';if(!q)return;
    var n=0;for(var i=0;i<items.length&&n<100;i++){var it=items[i];
      if(it[2].toLowerCase().indexOf(q)<0)continue;n++;
      var li=document.createElement('li'),a=document.createElement('a');
      a.href='L'+it[0]+'/N'+it[1]+'.html';a.textContent='L'+it[0]+' N'+it[1];
      li.appendChild(a);li.appendChild(document.createTextNode('  '+it[2]));out.appendChild(li);}
  });}
})();
"""

_LINK_SCHEMES = ("http", "https", "file")


# ---------------------------------------------------------------------------------------------- text
# Bidirectional controls: raw, one (U+202E RIGHT-TO-LEFT OVERRIDE) reverses the rest of its block on the page.
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_JOINERS = "\u200c\u200d"  # zero-width (non-)joiners: they shape their neighbours (emoji sequences, Persian)


def code_point_marker(ch: str) -> str:
    """The visible stand-in of an invisible or bidirectional character: ``<U+202E>``."""
    return f"<U+{ord(ch):04X}>"


def escape(text: Any) -> str:
    """Any text as HTML (``<``, ``>``, ``&`` and both quotes escaped): safe in element content and attributes.
    Bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C) are shown as ``<U+202E>``
    markers, so no text can reorder the rest of a page."""
    return html.escape(_BIDI_CONTROLS.sub(lambda m: code_point_marker(m.group()), str(text)), quote=True)


def _visible_token(tok: str) -> str:
    """``tok`` with its invisible characters made visible: format characters (a BOM, a zero-width space, a
    bidirectional control; a joiner only in a token with nothing else to show), line and paragraph separators as
    ``<U+XXXX>`` markers; a token that starts with a combining mark gets a dotted circle (U+25CC) to sit on."""
    if tok.isascii():
        return tok
    lone_joiners = not tok.strip(_JOINERS)
    out = []
    for ch in tok:
        cat = unicodedata.category(ch)
        if cat in ("Cf", "Zl", "Zp") and (ch not in _JOINERS or lone_joiners):
            out.append(code_point_marker(ch))
        else:
            out.append(ch)
    if unicodedata.category(tok[0]).startswith("M"):
        out.insert(0, "\u25cc")
    return "".join(out)


def visible_token(tok: str) -> str:
    """The visible form of a token as plain text (invisible characters as ``<U+XXXX>`` markers, see
    :func:`_visible_token`), for pages that insert tokens as text themselves (the Neuroscope site's viewer)."""
    return _visible_token(tok)


# Markers of a token: bytes of a split character (mri_lens.model.tokens) and invisible characters (above).
_MARKERS = re.compile(r"<0x[0-9A-F]{2}>|<U\+[0-9A-F]{4,6}>")


def escape_token(tok: str) -> str:
    """A token as HTML text (element content): escaped, with newlines and tabs made visible (``↵``, ``⇥``); the
    newline itself is kept, so a ``white-space: pre-wrap`` container still breaks the line there. Invisible
    characters are shown as ``<U+FEFF>``-style markers and a lone combining mark on a dotted circle (see
    :func:`_visible_token`), so every character of a token can be seen and none reorders the page. Each marker
    (also the ``<0xNN>`` bytes of a split character) is a left-to-right ``<bdi>`` isolate: right-to-left text
    around it (Arabic split into bytes) still reads right to left. The one token escaper."""
    shown = _visible_token(tok)
    parts, pos = [], 0
    for m in _MARKERS.finditer(shown):
        parts.append(escape(shown[pos:m.start()]))
        parts.append(f"<bdi dir='ltr'>{escape(m.group())}</bdi>")
        pos = m.end()
    parts.append(escape(shown[pos:]))
    return "".join(parts).replace("\n", "&#8629;\n").replace("\t", "&#8677;")


def json_for_html(obj: Any) -> str:
    """JSON safe inside a ``<script type="application/json">`` element (no ``<``, ``>``, ``&`` characters)."""
    return (json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def check_link_url(url: str) -> str:
    """``url`` unchanged when it may be a link of a generated page: a relative URL (``../index.html``,
    ``#top``) or an ``http``, ``https`` or ``file`` URL. Any other scheme (``javascript:``, ``data:``,
    ``vbscript:``..., in any case, after dropping what browsers ignore: leading whitespace and control
    characters, tabs and newlines) raises ``ValueError``. Every page that takes ``links`` checks them here."""
    if not isinstance(url, str):
        raise ValueError(f"a link URL must be a string, got {type(url).__name__}")
    seen = re.sub(r"[\t\n\r]", "", url)
    seen = re.sub(r"^[\x00-\x20\s]+", "", seen)
    m = re.match(r"([A-Za-z][A-Za-z0-9+.\-]*):", seen)
    if m and m.group(1).lower() not in _LINK_SCHEMES:
        raise ValueError(f"link URL scheme {m.group(1)!r} is not allowed: use a relative URL or an "
                         f"{'/'.join(_LINK_SCHEMES)} URL")
    return url


def links_html(links: Sequence[tuple[str, str]]) -> str:
    """``(text, url)`` pairs as a list of links (each URL checked by :func:`check_link_url`, both escaped)."""
    if not links:
        return ""
    return "<ul>" + "".join(f"<li><a href='{escape(check_link_url(href))}'>{escape(text)}</a></li>"
                            for text, href in links) + "</ul>"


# ---------------------------------------------------------------------------------------------- figures
def figure_html(fig: Any) -> str:
    """A plotly figure as an HTML fragment, without plotly.js (the page shell provides it), its box exactly as
    tall as the plot (``layout.height``, else plotly's default 450 px), so no blank gap follows it.

    The width comes from the page: the figure fills its container (``responsive``: it follows the window), and a
    ``layout.width`` only caps it (``max-width``), so a wide figure shrinks on a narrow screen instead of making
    the page scroll sideways. The fragment redraws the figure once the page has loaded (the container may have
    narrowed: a scroll bar appears as the rest of the page arrives) and breaks a title or subplot title wider than
    the figure into lines (:data:`_FIT_SCRIPT`).
    """
    import plotly.io as pio

    spec = fig.to_dict()
    layout = spec.setdefault("layout", {})
    height = layout.get("height") or 450
    width = layout.pop("width", None)
    layout["autosize"] = True
    out = pio.to_html(spec, full_html=False, include_plotlyjs=False, default_width="100%",
                      default_height=f"{int(height)}px", post_script=_FIT_SCRIPT, validate=False,
                      config={"displaylogo": False, "responsive": True})
    cap = f" style='max-width:{int(width)}px'" if width else ""
    return f"<div class='figure'{cap}>{out}</div>"


# plotly measures its box when it draws (mid-page): redraw at the container's final width once the page is there.
# plotly never wraps a title: one wider than the figure (a phone) is cut, so the script breaks each title or
# subplot title that overflows into lines at spaces (plain texts only), from the original text on every resize.
_FIT_SCRIPT = """(function(){var d=document.getElementById('{plot_id}');if(!d||!window.Plotly)return;
function wrap(s,n){var out=[],line='';s.split(' ').forEach(function(w){
 if(line&&(line+' '+w).length>n){out.push(line);line=w;}else{line=line?line+' '+w:w;}});
 out.push(line);return out;}
function room(b,a,box,peers){if(a!=='middle')return a==='end'?b.right-box.left-8:box.right-b.left-8;
 var c=(b.left+b.right)/2,r=2*Math.min(c-box.left,box.right-c);
 peers.forEach(function(p){var pc=(p.left+p.right)/2;if(pc!==c&&Math.abs(p.top-b.top)<4)r=Math.min(r,Math.abs(pc-c)-8);});
 return r-8;}
function fitted(s,t,box,peers){if(typeof s!=='string'||s.indexOf('<')>=0||!t)return null;
 var b=t.getBoundingClientRect(),r=room(b,t.getAttribute('text-anchor')||'start',box,peers||[]);
 return b.width>r&&r>0?{lines:wrap(s,Math.max(8,Math.floor(s.length*r/b.width))),h:b.height}:null;}
function measure(){var o=d._mlText,up={},box=d.querySelector('.main-svg').getBoundingClientRect(),
 mt=d._fullLayout.margin.t,tt=d.querySelector('.g-gtitle .gtitle'),ht=tt?tt.getBoundingClientRect().height:0,hs=0,v;
 v=fitted(o.title,tt,box);if(v){up['title.text']=v.lines.join('<br>');ht=v.lines.length*v.h;}
 var anns=Array.prototype.slice.call(d.querySelectorAll('.annotation')),peers=anns.map(function(g){
  var t=g.querySelector('text');return t?t.getBoundingClientRect():{left:0,right:0,top:-99,height:0};});
 anns.forEach(function(g,j){var i=+g.getAttribute('data-index');v=fitted(o.ann[i],g.querySelector('text'),box,peers);
  if(v)up['annotations['+i+'].text']=v.lines.join('<br>');
  if(peers[j].top<box.top+mt)hs=Math.max(hs,v?v.lines.length*v.h:peers[j].height);});
 if(!Object.keys(up).length)return null;
 var need=ht?ht+2*(hs+10)+10:hs+20;if(need>mt)up['margin.t']=Math.ceil(need);
 d._mlWrapped=true;return Plotly.relayout(d,up);}
function fit(){if(!d._fullLayout)return;var L=d.layout;
 if(!d._mlText)d._mlText={title:L.title&&(typeof L.title==='string'?L.title:L.title.text),
  ann:(L.annotations||[]).map(function(a){return a.text;}),mt:L.margin&&L.margin.t!==undefined?L.margin.t:null};
 Plotly.Plots.resize(d).then(function(){if(!d._mlWrapped)return measure();var o=d._mlText,up={'margin.t':o.mt};
  if(typeof o.title==='string')up['title.text']=o.title;
  o.ann.forEach(function(s,i){up['annotations['+i+'].text']=s;});d._mlWrapped=false;
  return Plotly.relayout(d,up).then(measure);});}
var timer;window.addEventListener('resize',function(){clearTimeout(timer);timer=setTimeout(fit,200);});
if(document.readyState==='complete'){fit();}else{window.addEventListener('load',fit);}})();"""


def _plotly_js() -> tuple[str, str]:
    """``(file name, source)`` of the installed plotly.js bundle (versioned name: pages of two plotly versions in
    one directory never share a file)."""
    from plotly.offline import get_plotlyjs

    src = get_plotlyjs()
    version = re.search(r"plotly\.js v(\d+\.\d+\.\d+)", src[:2000])
    name = f"plotly-{version.group(1)}.min.js" if version else \
        f"plotly-{hashlib.sha256(src.encode()).hexdigest()[:12]}.min.js"
    return name, src


def _write_if_changed(path: str, data: bytes) -> None:
    try:
        if os.path.getsize(path) == len(data):
            with open(path, "rb") as f:
                if hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest():
                    return
    except OSError:
        pass
    write_file_atomic(path, data)


def write_assets(root: str | os.PathLike, *, plotly: bool = False, site: bool = False) -> dict[str, str]:
    """Write the shared offline assets under ``root/assets/`` (once: an unchanged file is not rewritten).

    ``plotly``: the plotly.js bundle; ``site``: the stylesheet and script of a site (``site.css``, ``site.js``).
    Returns ``{"plotly"|"css"|"js": path relative to root}`` of what was written.
    """
    base = os.path.join(os.fspath(root), ASSETS_DIR)
    out = {}
    if plotly:
        name, src = _plotly_js()
        _write_if_changed(os.path.join(base, name), src.encode("utf-8"))
        out["plotly"] = f"{ASSETS_DIR}/{name}"
    if site:
        _write_if_changed(os.path.join(base, "site.css"), CSS.encode("utf-8"))
        _write_if_changed(os.path.join(base, "site.js"), SITE_JS.encode("utf-8"))
        out["css"], out["js"] = f"{ASSETS_DIR}/site.css", f"{ASSETS_DIR}/site.js"
    return out


# ---------------------------------------------------------------------------------------------- pages
def page(title: str, body: str, *, css: str | None = None, stylesheet: str | None = None,
         scripts: Sequence[str] = (), head_scripts: Sequence[str] = (), inline_plotly: bool = False) -> str:
    """The one page shell: doctype, the mri_lens marker, UTF-8, an escaped title, styles, then ``body``.

    ``css``: inline styles (default :data:`CSS` unless ``stylesheet`` is given); ``stylesheet``: a relative URL;
    ``head_scripts``: relative URLs loaded before the body (plotly.js); ``scripts``: relative URLs loaded after
    it; ``inline_plotly``: plotly.js inlined into the head instead (a standalone page).
    """
    style = f"<link rel='stylesheet' href='{escape(stylesheet)}'>" if stylesheet else \
        f"<style>{CSS if css is None else css}</style>"
    head = "".join(f"<script src='{escape(s)}'></script>" for s in head_scripts)
    if inline_plotly:
        head += f"<script>{_plotly_js()[1]}</script>"
    tail = "".join(f"<script src='{escape(s)}'></script>" for s in scripts)
    return (f"<!DOCTYPE html>{page_marker()}\n<html><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{escape(title)}</title>"
            f"{style}{head}</head><body>\n{body}\n{tail}</body></html>\n")


def write_page(path: str | os.PathLike, title: str, body: str, *, plotly: str | None = None,
               assets: str | os.PathLike | None = None, site: bool = False, css: str | None = None,
               overwrite: bool = False, owned: bool = False) -> str:
    """Write one page (atomically). Returns its absolute path.

    ``plotly``: ``None`` (no figures), ``"inline"`` (plotly.js inside the page) or ``"asset"`` (the shared
    ``assets/plotly-<version>.min.js`` under ``assets``, default the page's directory, referenced relatively).
    ``site``: link the site's shared ``assets/site.css`` and ``assets/site.js`` (under ``assets``) instead of
    inline styles. ``owned``: the page is inside a directory this save already claimed (no ownership check);
    otherwise a file at ``path`` that is not an mri_lens page is refused unless ``overwrite=True``.
    """
    if plotly not in (None, "inline", "asset"):
        raise ValueError(f"plotly must be None, 'inline' or 'asset', got {plotly!r}")
    path = os.path.abspath(os.fspath(path))
    root = os.path.abspath(os.fspath(assets)) if assets is not None else os.path.dirname(path)
    written = write_assets(root, plotly=plotly == "asset", site=site) if plotly == "asset" or site else {}
    up = os.path.relpath(root, os.path.dirname(path)).replace(os.sep, "/")
    prefix = "" if up == "." else up + "/"
    text = page(title, body, css=css, stylesheet=prefix + written["css"] if site else None,
                scripts=[prefix + written["js"]] if site else (),
                head_scripts=[prefix + written["plotly"]] if plotly == "asset" else (),
                inline_plotly=plotly == "inline")
    if owned:
        return write_text_atomic(path, text)
    return save_text(path, text, kind=PAGE_KIND, overwrite=overwrite)
