// mri_lens Neuroscope site viewer: the searchable index and every neuron page (index.html#L1/N88), drawn from the
// site's data files (data/*.js, loaded as scripts: browsers block fetch() from file://). No network, no framework.
// Every text taken from the data reaches the page through textContent / createTextNode; the only markup inserted
// as HTML is an N2G graph's SVG, drawn and escaped by the Python renderer that wrote the data.
(function () {
  'use strict';
  var S = {meta: null, tokens: null, chunks: {}, docs: {}, loaded: {}, waiting: {}, lower: null, dec: null};
  var PAGE_ROWS = 100, HIST_BINS = 60, SVG_NS = 'http://www.w3.org/2000/svg';
  var MARKERS = /(<0x[0-9A-F]{2}>|<U\+[0-9A-F]{4,6}>)/;

  // ---------------------------------------------------------------- data files call these
  window.MRI_SITE = {
    index: function (m) { S.meta = m; },
    tokens: function (t) { S.tokens = t; },
    chunk: function (layer, c, recs) {
      var m = {};
      recs.forEach(function (r) { m[r.n] = r; });
      S.chunks[layer + '_' + c] = m;
      done('L' + layer + '_' + c);
    },
    docs: function (c, d) { S.docs[c] = d; done('D' + c); }
  };

  function load(name, cb) {
    if (S.loaded[name]) { cb(); return; }
    var w = S.waiting[name] = S.waiting[name] || [];
    w.push(cb);
    if (w.length > 1) return;
    var s = document.createElement('script');
    s.src = 'data/' + name + '.js';
    s.onerror = function () { problem('could not load data/' + name + '.js (is the site complete?)'); };
    document.body.appendChild(s);
  }

  function done(name) {
    S.loaded[name] = true;
    var w = S.waiting[name] || [];
    delete S.waiting[name];
    w.forEach(function (f) { f(); });
  }

  // ---------------------------------------------------------------- decoding (see site_data.py)
  function decoder() {
    if (!S.dec) {
      S.dec = {};
      for (var i = 0; i < S.meta.alphabet.length; i++) S.dec[S.meta.alphabet.charCodeAt(i)] = i;
    }
    return S.dec;
  }

  function ints(s) {
    var w = S.meta.width, dec = decoder(), out = new Array(s.length / w);
    for (var i = 0; i < out.length; i++) {
      var v = 0;
      for (var j = 0; j < w; j++) v = v * S.meta.alphabet.length + dec[s.charCodeAt(i * w + j)];
      out[i] = v;
    }
    return out;
  }

  function levels(s, scale) {
    var dec = decoder(), q = S.meta.q, out = new Array(s.length);
    for (var i = 0; i < s.length; i++) out[i] = (dec[s.charCodeAt(i)] - q) / q * scale;
    return out;
  }

  // ---------------------------------------------------------------- DOM helpers (text only)
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function add(parent) {
    for (var i = 1; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      parent.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    }
    return parent;
  }

  function link(text, href) { var a = el('a', null, text); a.href = href; return a; }

  function svg(tag, attrs, text) {
    var e = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || (typeof v === 'number' && !isFinite(v))) return 'n/a';
    if (typeof v !== 'number') return String(v);
    if (v === 0) return '0';
    var d = digits || 4, a = Math.abs(v);
    return (a >= 1e5 || a < 1e-3) ? v.toExponential(d - 1) : String(Number(v.toPrecision(d)));
  }

  function signed(v) { return (v > 0 ? '+' : '') + fmt(v, 3); }

  // A token as text: newlines and tabs made visible, markers (<0xNN>, <U+XXXX>) as left-to-right isolates.
  function tokenInto(parent, s) {
    s.split(MARKERS).forEach(function (part, i) {
      if (!part) return;
      if (i % 2) { var b = el('bdi', null, part); b.dir = 'ltr'; parent.appendChild(b); return; }
      parent.appendChild(document.createTextNode(part.replace(/\n/g, '\u21b5\n').replace(/\t/g, '\u21e5')));
    });
    return parent;
  }

  function problem(text) { add(document.getElementById('app'), el('p', 'error', text)); }

  function nid(l, n) { return 'L' + l + '/N' + n; }

  function hasNeuron(l, n) { return S.meta.layers.indexOf(l) >= 0 && position(n) >= 0; }

  function position(n) {  // index of neuron n in the site's sorted ids, -1 if absent
    var ids = S.meta.ids, lo = 0, hi = ids.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1;
      if (ids[mid] === n) return mid;
      if (ids[mid] < n) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }

  function neuronLink(l, n, extra) {
    var text = nid(l, n) + (extra || '');
    return hasNeuron(l, n) ? link(text, '#' + nid(l, n)) : el('span', null, text);
  }

  // ---------------------------------------------------------------- routing
  function route() {
    var app = document.getElementById('app');
    app.textContent = '';
    if (!S.meta || !S.tokens) { problem('the site data (data/index.js, data/tokens.js) did not load'); return; }
    var h = decodeURIComponent(location.hash.replace(/^#/, ''));
    var m = /^L(\d+)\/N(\d+)$/.exec(h);
    if (m) { neuronPage(app, +m[1], +m[2]); return; }
    m = /^L(\d+)$/.exec(h);
    indexPage(app, m && S.meta.layers.indexOf(+m[1]) >= 0 ? +m[1] : S.meta.layers[0]);
  }

  // ---------------------------------------------------------------- the index
  var INDEX_COLS = [['neuron', 0], ['max', 1], ['mean', 2], ['density', 3], ['coverage', 4],
    ['loss change if ablated', 5]];
  var view = {sort: 1, desc: true, page: 0, query: ''};

  function indexPage(app, layer) {
    document.title = S.meta.title;
    add(app, el('h1', null, S.meta.title),
      el('p', null, S.meta.ids.length * S.meta.layers.length + ' neurons in ' + S.meta.layers.length +
        ' layers; ' + S.meta.n_docs + ' documents, ' + S.meta.n_tokens + ' tokens counted. A neuron\'s page is ' +
        'index.html#L{layer}/N{neuron}.'));
    add(app, el('h2', null, 'Search top tokens'));
    var box = el('input', 'search');
    box.id = 'search';
    box.placeholder = 'a token, e.g. " except" (leading space included)';
    box.value = view.query;
    var said = el('p', 'muted'), results = el('ol', 'results');
    results.id = 'results';
    var timer = null;
    box.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(function () { view.query = box.value; search(said, results, box.value); }, 120);
    });
    add(app, box, said, results);
    if (view.query) search(said, results, view.query);
    layerTable(app, layer);
  }

  function search(said, out, query) {
    out.textContent = '';
    said.textContent = '';
    var q = query.toLowerCase();
    if (!q) return;
    if (!S.lower) S.lower = S.tokens.map(function (t) { return t.toLowerCase(); });
    var hit = S.lower.map(function (t) { return t.indexOf(q) >= 0 ? (t === q ? 2 : 1) : 0; });
    var found = [];
    S.meta.layers.forEach(function (l) {
      S.meta.rows[String(l)].forEach(function (r) {
        var tt = r[6], best = 0, count = 0;
        for (var i = 0; i < tt.length; i += 2) {
          if (hit[tt[i]] > best || (hit[tt[i]] === best && hit[tt[i]] && tt[i + 1] > count)) {
            best = hit[tt[i]]; count = tt[i + 1];
          }
        }
        if (best) found.push([best, count, l, r]);
      });
    });
    found.sort(function (a, b) { return b[0] - a[0] || b[1] - a[1] || a[2] - b[2] || a[3][0] - b[3][0]; });
    said.textContent = found.length + ' neurons whose top tokens contain ' + JSON.stringify(query) +
      (found.length > 50 ? ' (the first 50 shown)' : '') + '; ranked by how many of their top ' + S.meta.k +
      ' examples peak on it.';
    found.slice(0, 50).forEach(function (f) {
      add(out, add(el('li'), link(nid(f[2], f[3][0]), '#' + nid(f[2], f[3][0])),
        ' ' + f[1] + '/' + S.meta.k + ' \u00b7 top tokens: ', topTokens(f[3][6])));
    });
  }

  function topTokens(tt) {
    var span = el('span', 'toks');
    for (var i = 0; i < tt.length; i += 2) {
      if (i) add(span, ' ');
      add(span, tokenInto(el('code'), S.tokens[tt[i]]), '\u00d7' + tt[i + 1]);
    }
    return span;
  }

  function layerTable(app, layer) {
    add(app, el('h2', null, 'Neurons by layer'));
    var tabs = el('nav', 'tabs');
    S.meta.layers.forEach(function (l) {
      add(tabs, l === layer ? el('b', null, 'layer ' + l) : link('layer ' + l, '#L' + l));
    });
    add(app, tabs, el('p', 'muted', 'Click a column to sort. Density: fraction of counted tokens where the neuron ' +
      'is > 0. Coverage: mean fraction of its top examples\' tokens above half its max. Loss change: estimated ' +
      'change in next-token loss when it is zeroed on its top examples (attribution patching).'));
    var rows = S.meta.rows[String(layer)].slice();
    var holder = el('div');
    add(app, holder);
    drawTable(holder, layer, rows);
  }

  function drawTable(holder, layer, rows) {
    holder.textContent = '';
    var c = view.sort, sgn = view.desc ? -1 : 1;
    rows.sort(function (a, b) {
      var x = a[c], y = b[c];
      if (x === null) return 1;
      if (y === null) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * sgn || a[0] - b[0];
    });
    var pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
    view.page = Math.min(view.page, pages - 1);
    var table = el('table', 'index'), head = el('tr');
    INDEX_COLS.forEach(function (col) {
      var th = el('th', 'sortable', col[0] + (col[1] === c ? (view.desc ? ' \u25bc' : ' \u25b2') : ''));
      th.addEventListener('click', function () {
        view.desc = view.sort === col[1] ? !view.desc : col[1] !== 0;
        view.sort = col[1];
        view.page = 0;
        drawTable(holder, layer, rows);
      });
      head.appendChild(th);
    });
    add(head, el('th', null, 'top tokens (count of top examples)'));
    var body = el('tbody');
    rows.slice(view.page * PAGE_ROWS, (view.page + 1) * PAGE_ROWS).forEach(function (r) {
      var tr = add(el('tr'), add(el('td'), link(nid(layer, r[0]), '#' + nid(layer, r[0]))));
      for (var i = 1; i <= 5; i++) add(tr, el('td', 'num', i === 5 ? (r[5] === null ? 'n/a' : signed(r[5])) : fmt(r[i], 3)));
      add(tr, add(el('td', 'snip'), topTokens(r[6])));
      body.appendChild(tr);
    });
    add(holder, add(el('div', 'wide'), add(table, add(el('thead'), head), body)), pager(holder, layer, rows, pages));
  }

  function pager(holder, layer, rows, pages) {
    var p = el('div', 'pager');
    var prev = el('button', null, '\u2190 previous'), next = el('button', null, 'next \u2192');
    prev.disabled = view.page === 0;
    next.disabled = view.page >= pages - 1;
    prev.addEventListener('click', function () { view.page--; drawTable(holder, layer, rows); });
    next.addEventListener('click', function () { view.page++; drawTable(holder, layer, rows); });
    var from = view.page * PAGE_ROWS;
    return add(p, prev, next, ' rows ' + (from + 1) + '-' + Math.min(from + PAGE_ROWS, rows.length) + ' of ' +
      rows.length);
  }

  // ---------------------------------------------------------------- a neuron page
  function neuronPage(app, layer, n) {
    document.title = nid(layer, n) + ' \u00b7 ' + S.meta.title;
    if (!hasNeuron(layer, n)) {
      add(app, el('h1', null, nid(layer, n)), add(el('p'), 'This site has no page for this neuron. ',
        link('Back to the index', '#')));
      return;
    }
    var name = 'L' + layer + '_' + Math.floor(position(n) / S.meta.chunk);
    add(app, el('p', 'muted', 'loading ' + nid(layer, n) + '...'));
    load(name, function () {
      if (location.hash.replace(/^#/, '') !== nid(layer, n)) return;  // the reader moved on
      app.textContent = '';
      drawNeuron(app, layer, S.chunks[name.slice(1)][n]);
      window.scrollTo(0, 0);
    });
  }

  function drawNeuron(app, layer, rec) {
    var st = rec.s;
    add(app, navBar(layer, rec), el('h1', null, nid(layer, rec.n)));
    if (rec.tt.length) add(app, add(el('p'), 'Top tokens (its max token in its top examples): ', topTokens(rec.tt)));
    if (rec.g) add(app, n2gSection(rec.g));
    add(app, el('h2', null, 'Statistics'), statsTable(rec));
    add(app, el('h2', null, 'Activation histogram'), histogram(rec));
    if (rec.cm && S.meta.categories) add(app, el('h2', null, 'Mean activation per category'), categories(rec));
    add(app, el('h2', null, 'Similar neurons'), similar(layer, rec));
    add(app, el('h2', null, 'Direct logit effects'), logits(rec));
    add(app, el('h2', null, 'Ablation effect'), ablation(rec));
    examples(app, rec, Math.max(Math.abs(st[0] || 0), Math.abs(st[1] || 0), 1e-6));
  }

  function navBar(layer, rec) {
    var nav = el('nav', 'neuron-nav'), all = [];
    S.meta.layers.forEach(function (l) { S.meta.ids.forEach(function (n) { all.push([l, n]); }); });
    var at = S.meta.layers.indexOf(layer) * S.meta.ids.length + position(rec.n);
    add(nav, link('index', '#'), link('layer ' + layer, '#L' + layer));
    if (at > 0) add(nav, link('\u2190 ' + nid(all[at - 1][0], all[at - 1][1]), '#' + nid(all[at - 1][0], all[at - 1][1])));
    if (at < all.length - 1) add(nav, link(nid(all[at + 1][0], all[at + 1][1]) + ' \u2192', '#' + nid(all[at + 1][0], all[at + 1][1])));
    var rnd = link('random', '#');
    rnd.className = 'random';
    rnd.addEventListener('click', function (e) {
      e.preventDefault();
      var r = all[Math.floor(Math.random() * all.length)];
      location.hash = nid(r[0], r[1]);
    });
    add(nav, rnd);
    (rec.ln || []).forEach(function (x) { add(nav, link(x[0], x[1])); });
    return nav;
  }

  function table(headers, rows, cls) {
    var t = el('table', cls), head = el('tr');
    headers.forEach(function (h) { add(head, el('th', null, h)); });
    var body = el('tbody');
    rows.forEach(function (r) {
      var tr = el('tr');
      r.forEach(function (c) { add(tr, c instanceof Node ? add(el('td'), c) : el('td', null, c)); });
      body.appendChild(tr);
    });
    return add(el('div', 'wide'), add(t, add(el('thead'), head), body));
  }

  function n2gSection(g) {
    var box = el('section', 'n2g');
    add(box, el('h2', null, 'Explanation (Neuron to Graph)'));
    var sc = g.scores || {}, names = Object.keys(sc).filter(function (k) {
      return sc[k] !== null && typeof sc[k] === 'object' && !Array.isArray(sc[k]);
    });
    var cols = [];
    names.forEach(function (k) { Object.keys(sc[k]).forEach(function (c) { if (cols.indexOf(c) < 0) cols.push(c); }); });
    var scored = names.filter(function (k) { return typeof sc[k].firing_f1 === 'number'; });
    scored.sort(function (a, b) { return sc[b].firing_f1 - sc[a].firing_f1; });
    if (scored.length) {
      add(box, el('p', 'verdict', 'On firing F1, ' + scored[0] + ' explains this neuron best (' +
        fmt(sc[scored[0]].firing_f1, 3) + ')' + (scored.length > 1 ? '; ' + scored.slice(1).map(function (k) {
        return k + ' ' + fmt(sc[k].firing_f1, 3); }).join(', ') : '') + '.'));
    } else {
      add(box, el('p', 'verdict', names.length ? 'No explainer has a firing F1 on the held-out examples.'
        : 'The graph was not evaluated.'));
    }
    add(box, el('p', 'muted', 'Token patterns that make the neuron fire: red nodes fire (darker = stronger), blue ' +
      'nodes are context before them, a bold outline marks where a pattern may end.'));
    var pic = el('div', 'wide graph');
    pic.innerHTML = g.svg;  // drawn and escaped by the N2G lens (Python), never data inserted as HTML here
    add(box, pic);
    if (names.length) {
      add(box, table(['explainer'].concat(cols), names.map(function (k) {
        return [k].concat(cols.map(function (c) { return fmt(sc[k][c], 3); }));
      })));
    }
    var facts = Object.keys(sc).filter(function (k) { return names.indexOf(k) < 0; });
    if (facts.length) add(box, el('p', 'muted', facts.map(function (k) { return k + ': ' + fmt(sc[k]); }).join('; ')));
    return box;
  }

  function statsTable(rec) {
    var s = rec.s, names = ['max', 'min', 'mean', 'std', 'density (fraction of tokens > 0)', 'median (approx.)',
      '90th percentile (approx.)', '99th percentile (approx.)', 'coverage (top examples\' tokens > half the max)'];
    var rows = names.map(function (k, i) { return [k, fmt(s[i])]; });
    rows.push(['tokens counted', String(S.meta.n_tokens)]);
    return table(['statistic', 'value'], rows, 'stats');
  }

  function categories(rec) {  // highest mean first; past the first 12, folded
    var c = S.meta.categories, vals = rec.cm, top = Math.max.apply(null, vals.map(function (v) {
      return Math.abs(v || 0); }).concat([1e-9]));
    var order = c.names.map(function (_, i) { return i; }).filter(function (i) { return vals[i] !== null; });
    order.sort(function (a, b) { return vals[b] - vals[a] || a - b; });
    var rows = order.map(function (i) {
      var bar = el('span', 'bar' + (vals[i] < 0 ? ' neg' : ''));
      bar.style.width = Math.round(Math.abs(vals[i]) / top * 120) + 'px';
      return [c.names[i], String(c.counts[i]), fmt(vals[i], 3), bar];
    });
    var head = ['category', 'documents', 'mean activation', ''], box = el('div');
    add(box, el('p', 'muted', 'Mean pooled activation over each category\'s documents.'), table(head, rows.slice(0, 12), 'cats'));
    if (rows.length > 12) add(box, add(el('details'), el('summary', null, 'all ' + rows.length + ' categories'), table(head, rows.slice(12), 'cats')));
    return box;
  }

  function similar(layer, rec) {
    var box = el('div', 'similar');
    [['sw', 'by output weights (cosine of W_out rows)', 'cos '],
      ['sa', 'by pooled activation (correlation over documents)', 'r ']].forEach(function (kind) {
      var p = add(el('p'), el('b', null, kind[1] + ': '));
      var v = rec[kind[0]];
      if (!v || !v[0].length) add(p, 'not available');
      else v[0].forEach(function (m, i) { add(p, i ? ', ' : '', neuronLink(layer, m, ' (' + kind[2] + fmt(v[1][i], 3) + ')')); });
      add(box, p);
    });
    return box;
  }

  function logits(rec) {
    if (!rec.lg) return el('p', 'muted', 'not available for this model: ' + (S.meta.no_logits || 'no unembedding'));
    var box = el('div', 'logits');
    add(box, el('p', 'muted', 'W_out[layer, neuron] @ W_U (final LayerNorm ignored), over the tokens the tokenizer ' +
      'emits.'));
    [[0, 'top tokens'], [2, 'bottom tokens']].forEach(function (x) {
      add(box, table([x[1], 'effect'], rec.lg[x[0]].map(function (t, i) {
        return [tokenInto(el('span', 'tok'), S.tokens[t]), signed(rec.lg[x[0] + 1][i])];
      }), 'logit'));
    });
    return box;
  }

  function ablation(rec) {
    if (rec.ab === undefined || rec.ab === null) {
      return el('p', 'muted', {computed: 'not computable for this neuron (its top examples predict no token)',
        off: 'not computed for this site (ablation=False)'}[S.meta.ablation] ||
        'not available: the model has no next-token loss (an encoder)');
    }
    return add(el('p'), 'Estimated change in next-token loss when this neuron is set to zero on its top examples: ',
      el('b', null, signed(rec.ab)), el('span', 'muted', ' (attribution patching: activation \u00d7 gradient, mean ' +
        'over their predicted tokens; positive: the neuron helps predict them).'));
  }

  // ---------------------------------------------------------------- the histogram (plain SVG, linear axes)
  function rebin(rec) {
    var e = S.meta.edges, h = rec.h, lo = rec.s[1], hi = rec.s[0], out = new Array(HIST_BINS).fill(0);
    if (!(hi > lo)) hi = lo + 1e-6;
    var w = (hi - lo) / HIST_BINS;
    for (var i = 1; i < h.length; i++) {
      var b = h[0] + i - 1, cnt = h[i];
      if (!cnt) continue;
      var a = Math.max(b === 0 ? lo : e[b - 1], lo), z = Math.min(b >= e.length ? hi : e[b], hi);
      if (!(z > a)) { out[Math.min(HIST_BINS - 1, Math.max(0, Math.floor((a - lo) / w)))] += cnt; continue; }
      for (var j = Math.max(0, Math.floor((a - lo) / w)); j < HIST_BINS && lo + j * w < z; j++) {
        var ov = Math.min(z, lo + (j + 1) * w) - Math.max(a, lo + j * w);
        if (ov > 0) out[j] += cnt * ov / (z - a);
      }
    }
    return {counts: out, lo: lo, hi: hi, w: w};
  }

  function ticks(lo, hi, n) {  // about n round values from lo to hi
    var span = hi - lo;
    if (!(span > 0)) return [lo];
    var raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw))), f = raw / mag;
    var step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag, out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(6)));
    return out;
  }

  function histogram(rec) {
    var box = el('div', 'histbox'), label = el('label', 'muted'), cb = el('input');
    cb.type = 'checkbox';
    add(label, cb, ' log count');
    var pic = el('div');
    add(box, pic, label, el('p', 'muted', 'Tokens per activation bin over the whole scan (the scan\'s bins spread ' +
      'evenly over ' + HIST_BINS + ' equal bins). Shaded: the activation bands the band examples come from; red ' +
      'ticks: the top examples\' maxima.'));
    var draw = function () { pic.textContent = ''; pic.appendChild(histSvg(rec, cb.checked)); };
    cb.addEventListener('change', draw);
    draw();
    return box;
  }

  function histSvg(rec, logScale) {
    var W = 640, H = 240, L = 62, R = 12, T = 12, B = 44, r = rebin(rec);
    var f = logScale ? function (c) { return Math.log10(1 + c); } : function (c) { return c; };
    var ymax = Math.max(f(Math.max.apply(null, r.counts)), 1e-9);
    var x = function (v) { return L + (v - r.lo) / (r.hi - r.lo) * (W - L - R); };
    var y = function (c) { return H - B - f(c) / ymax * (H - B - T); };
    var s = svg('svg', {viewBox: '0 0 ' + W + ' ' + H, 'class': 'hist', role: 'img'});
    add(s, svg('title', {}, 'activation histogram'));
    bandShades(s, rec, x, T, H - B);
    r.counts.forEach(function (c, j) {
      if (c <= 0) return;
      var x0 = x(r.lo + j * r.w), yy = y(c);
      add(s, add(svg('rect', {x: x0.toFixed(1), y: yy.toFixed(1), width: Math.max(x(r.lo + (j + 1) * r.w) - x0 - 0.5, 0.5).toFixed(1),
        height: (H - B - yy).toFixed(1), fill: '#4a7ab0'}), svg('title', {}, Math.round(c) + ' tokens in [' +
        fmt(r.lo + j * r.w, 3) + ', ' + fmt(r.lo + (j + 1) * r.w, 3) + ')')));
    });
    (rec.ex.top || []).forEach(function (ex) {
      var xx = x(ex[3]).toFixed(1);
      add(s, add(svg('line', {x1: xx, x2: xx, y1: T, y2: T + 10, stroke: '#d7301f', 'stroke-width': 2}),
        svg('title', {}, 'top example, doc ' + ex[0] + ': max ' + fmt(ex[3], 3))));
    });
    axes(s, r, x, y, ymax, logScale, W, H, L, B, T);
    return s;
  }

  function bandShades(s, rec, x, top, bottom) {
    if (!S.meta.has_max || !rec.ex.top || !rec.ex.top.length) return;
    var tv = rec.ex.top[0][3], b = S.meta.bands.concat([1]);
    for (var i = 0; i < S.meta.bands.length; i++) {
      var a = x(b[i] * tv), z = x(b[i + 1] * tv);
      add(s, add(svg('rect', {x: a.toFixed(1), y: top, width: Math.max(z - a, 0).toFixed(1), height: bottom - top,
        fill: i % 2 ? '#fde9b0' : '#fdf4d4'}), svg('title', {}, 'band ' + (i + 1) + ': document max in (' + b[i] +
        ', ' + b[i + 1] + '] \u00d7 the top value')));
    }
  }

  function axes(s, r, x, y, ymax, logScale, W, H, L, B, T) {
    var base = H - B;
    add(s, svg('line', {x1: L, x2: W - 12, y1: base, y2: base, stroke: '#333'}),
      svg('line', {x1: L, x2: L, y1: T, y2: base, stroke: '#333'}));
    ticks(r.lo, r.hi, 6).forEach(function (t) {
      add(s, svg('line', {x1: x(t), x2: x(t), y1: base, y2: base + 4, stroke: '#333'}),
        svg('text', {x: x(t), y: base + 16, 'font-size': 11, 'text-anchor': 'middle'}, fmt(t, 3)));
    });
    add(s, svg('text', {x: (L + W) / 2, y: H - 6, 'font-size': 12, 'text-anchor': 'middle'}, 'activation'));
    var yt = logScale ? [] : ticks(0, ymax, 4);
    if (logScale) for (var p = 1; Math.log10(1 + p) <= ymax * 1.0001; p *= 10) yt.push(p);
    yt.forEach(function (t) {
      var yy = logScale ? y(t) : base - t / ymax * (base - T);
      add(s, svg('line', {x1: L - 4, x2: L, y1: yy, y2: yy, stroke: '#333'}),
        svg('text', {x: L - 6, y: yy + 4, 'font-size': 11, 'text-anchor': 'end'}, fmt(t, 3)));
    });
    add(s, svg('text', {x: 12, y: (T + base) / 2, 'font-size': 12, 'text-anchor': 'middle',
      transform: 'rotate(-90 12 ' + (T + base) / 2 + ')'}, logScale ? 'tokens (log scale)' : 'tokens'));
  }

  // ---------------------------------------------------------------- examples
  function examples(app, rec, vmax) {
    var top = rec.ex.top || [];
    add(app, el('h2', null, 'Top ' + top.length + ' examples'), el('p', 'muted', 'One per document, ranked by the ' +
      'neuron\'s max over the document; snippet of ' + S.meta.before + ' tokens before and ' + S.meta.after +
      ' after the max token (outlined). Shading: blue (negative) to red (positive), relative to the neuron\'s ' +
      'largest |activation|; hover a token for its value.'));
    exampleList(app, top, vmax, true);
    add(app, el('h2', null, 'Examples from activation bands'));
    if (!S.meta.has_max) add(app, el('p', 'muted', 'the scan kept no "max" pooling, so band examples are not available'));
    else {
      var b = S.meta.bands.concat([1]);
      for (var i = 0; i < S.meta.bands.length; i++) {
        add(app, el('h3', null, 'document max in (' + b[i] + ', ' + b[i + 1] + '] \u00d7 top value'));
        exampleList(app, rec.ex['b' + i] || [], vmax, false);
      }
    }
    add(app, el('h2', null, 'Random examples'));
    exampleList(app, rec.ex.rnd || [], vmax, false);
  }

  function exampleList(app, list, vmax, ranked) {
    if (!list.length) { add(app, el('p', 'muted', 'none')); return; }
    list.forEach(function (ex, i) { add(app, example(ex, i, vmax, ranked)); });
  }

  function shade(span, a, vmax) {
    if (!a || !isFinite(a)) return;
    var lvl = Math.min(8, Math.ceil(Math.abs(a) / vmax * 8));
    span.className = (a > 0 ? 'p' : 'n') + lvl;
  }

  function example(ex, i, vmax, ranked) {
    var box = el('div', 'ex'), labels = S.meta.labels;
    var head = (ranked ? '#' + (i + 1) + ' \u00b7 ' : '') + 'doc ' + ex[0] +
      (labels ? ' \u00b7 ' + S.meta.label_names[labels[ex[0]]] : '') + ' \u00b7 max ' + fmt(ex[3], 4) + ' \u00b7 min ' +
      fmt(ex[4], 4) + ' \u00b7 max at token ' + (ex[1] + ex[2]);
    add(box, el('div', 'exhead', head));
    var toks = ints(ex[6]), acts = levels(ex[7], ex[5]), snip = el('div', 'snip');
    if (ex[1] > 0) add(snip, '\u2026');
    toks.forEach(function (t, j) {
      var sp = el('span');
      shade(sp, acts[j], vmax);
      if (j === ex[2]) sp.className = (sp.className + ' mx').trim();
      sp.title = fmt(acts[j], 3);
      snip.appendChild(tokenInto(sp, S.tokens[t]));
    });
    add(box, snip);
    var det = el('details'), full = el('div', 'full');
    add(det, el('summary', null, 'full text'), full);
    det.addEventListener('toggle', function () {
      if (!det.open || full.firstChild) return;
      var c = Math.floor(ex[0] / S.meta.doc_chunk);
      load('D' + c, function () { fullText(full, S.docs[c][String(ex[0])], ex[1] + ex[2]); });
    });
    return add(box, det);
  }

  function fullText(box, codes, pos) {
    var toks = ints(codes);
    box.previousSibling.textContent = 'full text (' + toks.length + ' tokens)';
    toks.forEach(function (t, i) { box.appendChild(tokenInto(el(i === pos ? 'mark' : 'span'), S.tokens[t])); });
  }

  window.addEventListener('hashchange', route);
  document.addEventListener('DOMContentLoaded', route);
})();
