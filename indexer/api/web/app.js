// The meshtrace search page. All state lives in the URL (?q=&target=&offset=&trace=&span=&view=), so every view can
// be shared and the back button works; render() draws whatever the URL says.
'use strict';

const PAGE = 50;
const EXAMPLES = ['error=true since=1h', 'trace.duration>500ms since=1h', 'service=inventory-service status=error'];
const $ = (id) => document.getElementById(id);

// el builds an element: el('td', {className: 'num'}, 'text', childNode, ...). Text is never parsed as HTML.
function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k.startsWith('aria-') || k.startsWith('data-') || k === 'role') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids) if (k !== null && k !== undefined && k !== false) e.append(k);
  return e;
}

// duration formats microseconds the way tracing UIs do: 850µs, 12.3ms, 1.25s.
function duration(us) {
  if (us < 1000) return us + 'µs';
  if (us < 1e6) return +(us / 1000).toPrecision(3) + 'ms';
  return +(us / 1e6).toPrecision(3) + 's';
}

// when formats a unix-microsecond instant as UTC date and time to the millisecond.
const when = (us) => new Date(us / 1000).toISOString().replace('T', ' ').slice(0, 23);

// short is the id as result lists show it: leading zeros dropped (64-bit ids padded to 128), 16 digits at most.
const short = (id) => id.replace(/^0+(?=.)/, '').slice(0, 16);

const plural = (n, word) => n + ' ' + word + (n === 1 ? '' : 's');

// value renders an attribute value; arrays and objects as JSON.
const value = (v) => (typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v));

// keyAttr says whether a span attribute is worth a column in result lists: business keys (*_id), routes,
// status codes and messaging destinations.
const keyAttr = (k) => /(^|[._])[a-z]*_?id$|route$|status_code$|destination\.name$|^peer\.service$/.test(k) &&
  !/^(trace|span|parent)_?id$/.test(k);

// TOKEN_KEY keeps the API token the page sends as "Authorization: Bearer", for this browser tab only. There
// is none when the indexer is open, or when a proxy in front of it (oauth2-proxy) adds the header itself.
const TOKEN_KEY = 'meshtrace-api-token';

// askToken asks for an API token after a 401; false when the user gives none.
function askToken(message) {
  const t = window.prompt(message + '\nAn API token for this indexer (kept for this tab only):');
  if (!t || !t.trim()) return false;
  sessionStorage.setItem(TOKEN_KEY, t.trim());
  return true;
}

async function getJSON(url) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const r = await fetch(url, token ? {headers: {Authorization: 'Bearer ' + token}} : {});
  if (r.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    const body = await r.json().catch(() => ({}));
    if (askToken(body.error || 'Unauthenticated.')) return getJSON(url);
  }
  const body = await r.json().catch(() => ({error: r.status + ' ' + r.statusText}));
  if (!r.ok) throw Object.assign(new Error(body.error || r.statusText), {position: body.position || 0});
  return body;
}

// ---- navigation -------------------------------------------------------------------------------------------

function params() { return new URLSearchParams(location.search); }

// navigate pushes a new URL (a new history entry) and draws it.
function navigate(p) {
  history.pushState(null, '', '?' + p.toString());
  render();
}

// drawn counts renders; a response that arrives after a newer render started is dropped. <main> is
// aria-busy while the latest render waits for the API.
let drawn = 0;

async function render() {
  const mine = ++drawn;
  const main = document.querySelector('main');
  main.setAttribute('aria-busy', 'true');
  const p = params();
  $('q').value = p.get('q') || '';
  $('target').value = p.get('target') || '';
  $('query-error').hidden = true;
  document.title = (p.get('trace') ? 'trace ' + short(p.get('trace')) : p.get('q') || 'search') + ' · meshtrace';
  views(p);
  if (p.get('trace')) {
    $('results').hidden = $('graph').hidden = true;
    await showTrace(p.get('trace'), p.get('span'));
  } else if (p.get('view') === 'graph') {
    $('results').hidden = $('trace').hidden = true;
    await showGraph(p);
  } else if (p.has('q')) {
    $('trace').hidden = $('graph').hidden = true;
    await search(p);
  } else {
    $('results').hidden = $('trace').hidden = $('graph').hidden = true;
    $('status').replaceChildren('Type a query or a trace id and press Enter. Examples: ',
      ...EXAMPLES.flatMap((q, i) => [i ? ', ' : '', link(new URLSearchParams({q}), q)]), '.');
  }
  if (mine === drawn) main.setAttribute('aria-busy', 'false');
}

$('search').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const q = $('q').value.trim();
  if (/^[0-9a-f]{16}([0-9a-f]{16})?$/i.test(q)) { // a trace id opens the trace, as in Jaeger
    navigate(new URLSearchParams({trace: q.toLowerCase()}));
    return;
  }
  const p = new URLSearchParams({q});
  if ($('target').value) p.set('target', $('target').value);
  if (params().get('view') === 'graph') p.set('view', 'graph');
  navigate(p);
});
window.addEventListener('popstate', render);

// ---- search -----------------------------------------------------------------------------------------------

async function search(p) {
  const mine = drawn;
  const offset = Math.max(0, parseInt(p.get('offset') || '0', 10) || 0);
  const api = new URLSearchParams({q: p.get('q'), limit: PAGE, offset});
  if (p.get('target')) api.set('target', p.get('target'));
  $('status').textContent = 'Searching…';
  let res;
  try {
    res = await getJSON('/api/v1/search?' + api);
  } catch (e) {
    if (mine !== drawn) return;
    $('status').textContent = '';
    $('results').hidden = true;
    showQueryError(p.get('q'), e);
    return;
  }
  if (mine !== drawn) return;
  const n = (res.traces || res.spans || []).length;
  $('status').textContent = res.total === 0 ? 'No ' + res.target + ' match.' :
    `${res.total} ${res.target}` + (res.total > n ? `, showing ${offset + 1}–${offset + n}` : '') +
    (res.partial ? ' (partial: the trace join was cut at its limit)' : '');
  const table = res.target === 'traces' ? traceTable(res.traces || []) : spanTable(res.spans || []);
  $('results').replaceChildren(resultPlot(res), table, pager(p, offset, n, res.total));
  $('results').hidden = false;
}

// showQueryError shows the message and the query with the failing position marked.
function showQueryError(q, e) {
  const box = $('query-error');
  box.replaceChildren(el('strong', {}, 'Query error: '), e.message);
  if (e.position > 0) {
    // position is a 1-based byte offset; walk the string to find the character it falls on.
    const chars = Array.from(q), utf8 = new TextEncoder();
    let bytes = 0, i = 0;
    while (i < chars.length && bytes + utf8.encode(chars[i]).length < e.position) bytes += utf8.encode(chars[i++]).length;
    box.append(el('pre', {className: 'query'}, chars.slice(0, i).join(''),
      el('mark', {title: 'position ' + e.position}, chars[i] || ' '), chars.slice(i + 1).join(''),
      el('span', {className: 'caret', 'aria-hidden': 'true'}, '\n' + ' '.repeat(i) + '^')));
  }
  box.hidden = false;
}

function link(p, text, label) {
  const a = el('a', {href: '?' + p, textContent: text});
  if (label) a.setAttribute('aria-label', label);
  a.addEventListener('click', (ev) => {
    if (ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
    ev.preventDefault();
    navigate(p);
  });
  return a;
}

function traceLink(id, span) {
  const p = params();
  p.delete('span');
  p.set('trace', id);
  if (span) p.set('span', span);
  return p;
}

function pager(p, offset, n, total) {
  const nav = el('nav', {className: 'pager', 'aria-label': 'Result pages'});
  const at = (o) => { const q = new URLSearchParams(p); q.set('offset', o); return q; };
  if (offset > 0) nav.append(link(at(Math.max(0, offset - PAGE)), '← Previous'));
  if (offset + n < total) nav.append(link(at(offset + PAGE), 'Next →'));
  return nav;
}

function table(head, rows) {
  const t = el('table', {className: 'results'});
  t.append(el('thead', {}, el('tr', {}, ...head.map(([h, cls]) => el('th', {scope: 'col', className: cls || ''}, h)))));
  t.append(el('tbody', {}, ...rows));
  return t;
}

// chips shows key=value pairs; business keys (cls 'key', or any *_id when cls is omitted) stand out.
function chips(entries, cls) {
  return el('span', {className: 'chips'}, ...entries.map(([k, v]) => el('span', {className: 'chip ' + (cls ?? (/_id$/.test(k) ? 'key' : ''))},
    el('span', {className: 'k'}, k), '=', el('span', {className: 'v'}, v))));
}

function traceTable(traces) {
  const max = Math.max(1, ...traces.map((t) => t.duration));
  return table([['Start (UTC)'], ['Root'], ['Keys'], ['Services'], ['Duration', 'num'], ['Spans', 'num'], ['Errors', 'num'], ['Trace']],
    traces.map((t) => el('tr', {className: t.error_count ? 'has-error' : ''},
      el('td', {className: 'time'}, when(t.start)),
      el('td', {}, el('strong', {}, t.root_service || '?'), ' ', t.root_name || '(root span not seen)'),
      el('td', {}, chips(Object.entries(t.keys || {}).map(([k, v]) => [k, v.join(', ')]), 'key')),
      el('td', {className: 'services'}, (t.services || []).join(', ')),
      el('td', {className: 'num'}, el('span', {className: 'dur'}, el('span', {className: 'dur-bar', style: `width:${100 * t.duration / max}%`}), duration(t.duration))),
      el('td', {className: 'num'}, String(t.span_count)),
      el('td', {className: 'num'}, t.error_count ? el('span', {className: 'badge error'}, String(t.error_count)) : '0'),
      el('td', {}, link(traceLink(t.trace_id), short(t.trace_id), 'Open trace ' + t.trace_id)))));
}

function spanTable(spans) {
  return table([['Start (UTC)'], ['Service'], ['Name'], ['Kind'], ['Duration', 'num'], ['Status'], ['Attributes'], ['Trace']],
    spans.map((s) => el('tr', {className: s.error ? 'has-error' : ''},
      el('td', {className: 'time'}, when(s.start)),
      el('td', {}, el('strong', {}, s.service)),
      el('td', {}, s.name),
      el('td', {}, s.kind),
      el('td', {className: 'num'}, duration(s.duration)),
      el('td', {}, status(s)),
      el('td', {}, chips(Object.entries(s.attr || {}).filter(([k]) => keyAttr(k)).map(([k, v]) => [k, value(v)]))),
      el('td', {}, link(traceLink(s.trace_id, s.span_id), short(s.trace_id), 'Open trace ' + s.trace_id)))));
}

function status(s) {
  if (s.error) return el('span', {className: 'badge error', title: s.status_message || ''}, 'error' + (s.status_message ? ': ' + s.status_message : ''));
  return el('span', {className: 'badge ' + s.status_code}, s.status_code);
}

// ---- views ------------------------------------------------------------------------------------------------

// views draws the tabs: the search results and the service graph of the same query.
function views(p) {
  const graph = p.get('view') === 'graph';
  const to = (g) => {
    const q = new URLSearchParams();
    if (p.has('q')) q.set('q', p.get('q'));
    if (p.get('target')) q.set('target', p.get('target'));
    if (g) q.set('view', 'graph');
    return q;
  };
  const tab = (g, text) => {
    const a = link(to(g), text);
    if (g === graph && !p.get('trace')) a.setAttribute('aria-current', 'page');
    return a;
  };
  $('views').replaceChildren(tab(false, 'Search'), tab(true, 'Service graph'));
}

// ---- result plot ------------------------------------------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';

// svg builds an SVG element: svg('circle', {cx: 1, class: 'pt'}, child, ...); strings become text nodes.
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) if (k !== null && k !== undefined && k !== false) e.append(k);
  return e;
}

// clock formats a unix-microsecond instant as a UTC time of day, with the date when the range spans days.
const clock = (us, days) => new Date(us / 1000).toISOString().slice(days ? 5 : 11, 19).replace('T', ' ');

// resultPlot draws the answer's hits (the page the table shows, no extra fetch): a scatter of start time
// against duration (log scale when the durations span more than 20×), errors in red, each point opening
// its trace as the table's link does, and under it a histogram of the hits over time.
function resultPlot(res) {
  const traces = res.target === 'traces';
  const hits = (traces ? res.traces : res.spans) || [];
  if (!hits.length) return el('div', {className: 'plot', hidden: true});
  const W = 1000, H = 170, HH = 44, L = 56, R = 12, T = 8, B = 20;
  const t0 = Math.min(...hits.map((h) => h.start)), t1 = Math.max(...hits.map((h) => h.start));
  const span = Math.max(1, t1 - t0), pad = span * 0.02 + (t1 === t0 ? 1e6 : 0);
  const xmin = t0 - pad, xmax = t1 + pad;
  const x = (us) => L + (W - L - R) * (us - xmin) / (xmax - xmin);
  const ds = hits.map((h) => Math.max(1, h.duration));
  const dmin = Math.min(...ds), dmax = Math.max(...ds);
  const log = dmax / dmin > 20;
  const [lo, hi] = log ? [Math.log10(dmin) - 0.1, Math.log10(dmax) + 0.1] : [0, dmax * 1.1];
  const y = (d) => T + (H - T - B) * (1 - ((log ? Math.log10(Math.max(1, d)) : d) - lo) / (hi - lo));
  const days = xmax - xmin > 864e8 || new Date(xmin / 1000).getUTCDate() !== new Date(xmax / 1000).getUTCDate();

  const plot = svg('svg', {class: 'scatter', viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': `${hits.length} ${res.target} by start time and duration` + (log ? ' (log scale)' : '')});
  // y axis: durations at powers of ten (log) or at quarters of the range.
  const yt = log ? Array.from({length: Math.floor(hi) - Math.ceil(lo) + 1}, (_, i) => 10 ** (Math.ceil(lo) + i)) :
    [0.25, 0.5, 0.75, 1].map((f) => f * hi);
  for (const d of yt) {
    plot.append(svg('line', {class: 'grid', x1: L, x2: W - R, y1: y(d), y2: y(d)}),
      svg('text', {class: 'tick', x: L - 6, y: y(d) + 4, 'text-anchor': 'end'}, duration(Math.round(d))));
  }
  for (let i = 0; i <= 4; i++) {
    const us = xmin + (xmax - xmin) * i / 4;
    plot.append(svg('text', {class: 'tick', x: x(us), y: H - 5, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle'}, clock(us, days)));
  }
  plot.append(svg('line', {class: 'axis', x1: L, x2: L, y1: T, y2: H - B}), svg('line', {class: 'axis', x1: L, x2: W - R, y1: H - B, y2: H - B}));
  const tip = el('div', {className: 'plot-tip', role: 'tooltip', hidden: true});
  for (const h of hits) {
    const err = traces ? h.error_count > 0 : h.error;
    const label = traces ? `${h.root_service || '?'} ${h.root_name || '(root span not seen)'}` : `${h.service} ${h.name}`;
    const text = `${label} — ${duration(h.duration)}${err ? ' — ' + (traces ? plural(h.error_count, 'error') : 'error') : ''}`;
    const target = traceLink(h.trace_id, traces ? '' : h.span_id);
    const c = svg('circle', {class: 'pt' + (err ? ' error' : ''), cx: x(h.start).toFixed(1), cy: y(h.duration).toFixed(1), r: 5,
      tabindex: 0, role: 'link', 'aria-label': `Open trace ${h.trace_id}: ${text}`, 'data-trace-id': h.trace_id}, svg('title', {}, text));
    const show = () => {
      tip.textContent = text;
      tip.hidden = false;
      const box = plot.getBoundingClientRect(), k = box.width / W;
      tip.style.left = Math.min(box.width - 240, x(h.start) * k + 10) + 'px';
      tip.style.top = (y(h.duration) * k - 8) + 'px';
    };
    c.addEventListener('mouseenter', show);
    c.addEventListener('focus', show);
    c.addEventListener('mouseleave', () => { tip.hidden = true; });
    c.addEventListener('blur', () => { tip.hidden = true; });
    c.addEventListener('click', () => navigate(target));
    c.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') navigate(target); });
    plot.append(c);
  }
  // histogram: hits per bin over the same time axis.
  const N = 40, bins = new Array(N).fill(0), errs = new Array(N).fill(0);
  for (const h of hits) {
    const i = Math.min(N - 1, Math.floor(N * (h.start - xmin) / (xmax - xmin)));
    bins[i]++;
    if (traces ? h.error_count > 0 : h.error) errs[i]++;
  }
  const top = Math.max(...bins), bw = (W - L - R) / N;
  const hist = svg('svg', {class: 'histogram', viewBox: `0 0 ${W} ${HH}`, role: 'img', 'aria-label': `${res.target} over time, ${N} bins`},
    svg('text', {class: 'tick', x: L - 6, y: 12, 'text-anchor': 'end'}, String(top)),
    svg('line', {class: 'axis', x1: L, x2: W - R, y1: HH - 2, y2: HH - 2}));
  bins.forEach((n, i) => {
    if (!n) return;
    const h = (HH - 6) * n / top, he = (HH - 6) * errs[i] / top;
    const from = xmin + (xmax - xmin) * i / N;
    hist.append(svg('rect', {class: 'bin', x: L + i * bw + 1, y: HH - 2 - h, width: bw - 2, height: h},
      svg('title', {}, `${n} ${res.target} from ${clock(from, days)}` + (errs[i] ? `, ${errs[i]} with errors` : ''))));
    if (he) hist.append(svg('rect', {class: 'bin error', x: L + i * bw + 1, y: HH - 2 - he, width: bw - 2, height: he}));
  });
  return el('div', {className: 'plot'}, plot, hist, tip);
}

// ---- service graph ----------------------------------------------------------------------------------------

// showGraph draws the service graph of the traces the query matches (GET /api/v1/dependencies; the whole
// graph of the last day without a query): services and topics in layers, callers left of callees.
async function showGraph(p) {
  const mine = drawn;
  const q = p.get('q') || '';
  $('status').textContent = 'Loading the service graph…';
  let res;
  try {
    res = await getJSON('/api/v1/dependencies?' + new URLSearchParams({q}));
  } catch (e) {
    if (mine !== drawn) return;
    $('status').textContent = '';
    $('graph').hidden = true;
    showQueryError(q, e);
    return;
  }
  if (mine !== drawn) return;
  const edges = res.data || [];
  const nodes = new Set(edges.flatMap((e) => [e.parent, e.child]));
  $('status').textContent = (edges.length ? `${plural(nodes.size, 'node')}, ${plural(edges.length, 'edge')}` : 'No calls') +
    ` in the traces ${q ? 'matching ' + q + ' ' : ''}started ${when(res.since)} – ${when(res.until)} UTC` +
    (res.partial ? ' (partial: the trace join was cut at its limit)' : '') + '. Edge labels count traces.';
  $('graph').replaceChildren(edges.length ? graphSVG(edges, q) : el('p', {}, 'Nothing to draw.'));
  $('graph').hidden = false;
}

// layers assigns each node the length of the longest caller chain leading to it (edges closing a cycle are
// ignored), so callers sit left of the services they call.
function layers(nodes, edges) {
  const layer = new Map([...nodes].map((n) => [n, 0]));
  for (let i = 0; i < nodes.size; i++) { // Bellman-Ford style: at most |nodes| rounds, so cycles stop
    let changed = false;
    for (const e of edges) {
      if (e.parent !== e.child && layer.get(e.child) < layer.get(e.parent) + 1 && layer.get(e.parent) + 1 < nodes.size) {
        layer.set(e.child, layer.get(e.parent) + 1);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return layer;
}

function graphSVG(edges, q) {
  const nodes = new Set(edges.flatMap((e) => [e.parent, e.child]));
  const layer = layers(nodes, edges);
  const cols = [];
  for (const [n, l] of layer) (cols[l] ||= []).push(n);
  for (const c of cols) if (c) c.sort();
  const NW = 170, NH = 34, GX = 90, GY = 26, P = 16;
  const rows = Math.max(...cols.map((c) => (c ? c.length : 0)));
  const W = P * 2 + cols.length * NW + (cols.length - 1) * GX, H = P * 2 + rows * NH + rows * GY; // room under the last row for looping edges
  const pos = new Map();
  cols.forEach((c, i) => (c || []).forEach((n, j) => {
    const off = (rows - c.length) * (NH + GY) / 2;
    pos.set(n, {x: P + i * (NW + GX), y: P + off + j * (NH + GY)});
  }));
  const max = Math.max(...edges.map((e) => e.callCount));
  const g = svg('svg', {class: 'service-graph', viewBox: `0 0 ${W} ${H}`, width: W, role: 'img',
    'aria-label': `Service graph: ${plural(nodes.size, 'node')}, ${plural(edges.length, 'edge')}`},
  svg('defs', {}, svg('marker', {id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto'},
    svg('path', {d: 'M0,0 L10,5 L0,10 z', class: 'arrow'}))));
  for (const e of edges) {
    const a = pos.get(e.parent), b = pos.get(e.child);
    let d, mx, my;
    if (a.x < b.x && layer.get(e.child) === layer.get(e.parent) + 1) {
      const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2;
      d = `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`;
      [mx, my] = [(x1 + x2) / 2, (y1 + y2) / 2];
    } else { // an edge skipping layers, a back edge or a self call: loop under the nodes
      const x1 = a.x + NW / 2, y1 = a.y + NH, x2 = b.x + NW / 2, y2 = b.y + NH;
      const dip = Math.max(y1, y2) + GY;
      d = `M${x1},${y1} C${x1},${dip} ${x2 + (x1 === x2 ? 40 : 0)},${dip} ${x2},${y2}`;
      [mx, my] = [(x1 + x2) / 2 + (x1 === x2 ? 20 : 0), dip - 4];
    }
    const w = 1 + 3 * e.callCount / max;
    g.append(svg('g', {class: 'edge', 'data-edge': e.parent + '>' + e.child},
      svg('title', {}, `${e.parent} → ${e.child}: ${plural(e.callCount, 'trace')}`),
      svg('path', {d, 'stroke-width': w, 'marker-end': 'url(#arrow)'}),
      svg('text', {x: mx, y: my - 4, 'text-anchor': 'middle', class: 'count'}, String(e.callCount))));
  }
  for (const [n, {x, y}] of pos) {
    const topic = n.startsWith('topic:');
    const node = svg('g', {class: 'node' + (topic ? ' topic' : ''), 'data-node': n, transform: `translate(${x},${y})`},
      svg('title', {}, topic ? `messaging destination ${n.slice(6)}` : `service ${n}: search its traces`),
      svg('rect', {width: NW, height: NH, rx: topic ? 17 : 5}),
      svg('text', {x: NW / 2, y: NH / 2 + 5, 'text-anchor': 'middle'}, n.length > 22 ? n.slice(0, 21) + '…' : n));
    if (!topic && /^[A-Za-z0-9_.:-]+$/.test(n)) { // a service opens its traces under the same query
      const to = new URLSearchParams({q: (q ? q + ' ' : '') + 'service=' + n, target: 'traces'});
      node.setAttribute('tabindex', 0);
      node.setAttribute('role', 'link');
      node.addEventListener('click', () => navigate(to));
      node.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') navigate(to); });
    }
    g.append(node);
  }
  return el('div', {className: 'graph-box'}, g);
}

// ---- trace view -------------------------------------------------------------------------------------------

async function showTrace(id, spanID) {
  const mine = drawn;
  const view = $('trace');
  $('status').textContent = 'Loading trace…';
  let res;
  try {
    res = await getJSON('/api/v1/traces/' + encodeURIComponent(id));
  } catch (e) {
    if (mine !== drawn) return;
    $('status').textContent = '';
    view.replaceChildren(el('p', {className: 'error-text', role: 'alert'}, e.message));
    view.hidden = false;
    return;
  }
  if (mine !== drawn) return;
  const {trace, spans} = res;
  $('status').textContent = res.hidden_spans ?
    plural(res.hidden_spans, 'span') + ' of this trace belong to other teams and are not shown.' : '';
  const back = params();
  back.delete('trace');
  back.delete('span');
  const details = el('aside', {id: 'details', 'aria-label': 'Span details'});
  view.replaceChildren(
    el('div', {className: 'trace-head'},
      back.has('q') ? link(back, '← Results') : null,
      el('h2', {}, el('strong', {}, trace.root_service || '?'), ' ', trace.root_name || '(root span not seen)'),
      el('p', {className: 'meta'}, 'Trace ', el('code', {}, trace.trace_id), ` · ${when(trace.start)} UTC · ${duration(trace.duration)} · ` +
        `${plural(trace.span_count, 'span')} · ${plural((trace.services || []).length, 'service')} · `,
        el('span', {className: trace.error_count ? 'badge error' : 'badge'}, plural(trace.error_count, 'error'))),
      keyLinks(trace.keys || {}),
      readBy(trace.trace_id, res.linked_from || [])),
    el('div', {className: 'trace-body'}, waterfall(trace, spans, details), details));
  view.hidden = false;
  const selected = spans.find((s) => s.span_id === spanID) || spans.find((s) => s.error) || spans[0];
  if (selected) select(selected, trace, false);
}

// readBy lists the spans that link to the trace's producer spans (the consumers of its messages), each a link
// to that span in its trace, with its consumer group and how long the message waited when the link says.
function readBy(traceID, linked) {
  if (!linked.length) return null;
  return el('p', {className: 'meta linked-from'}, 'Read by: ', ...linked.flatMap((s, i) => {
    const wait = (s.links || []).find((l) => l.trace_id === traceID && l.attr &&
      l.attr['meshtrace.kafka.time_in_topic_ms'] !== undefined);
    const group = (s.attr || {})['messaging.consumer.group.name'];
    const text = `${s.service} ${s.name}` + (group ? ` (${group})` : '') +
      (wait ? `, waited ${wait.attr['meshtrace.kafka.time_in_topic_ms']} ms` : '');
    const a = link(new URLSearchParams({trace: s.trace_id, span: s.span_id}), text, `Open the span ${s.service} ${s.name}`);
    return i ? [' · ', a] : [a];
  }));
}

// keyLinks shows a trace's business keys, each a link to the other traces with the same value.
function keyLinks(keys) {
  return el('span', {className: 'chips'}, ...Object.entries(keys).flatMap(([k, vs]) => vs.map((v) => {
    const chip = chips([[k, v]], 'key');
    if (!/^[A-Za-z0-9_.:-]+$/.test(v)) return chip;
    const a = link(new URLSearchParams({q: `${k}=${v}`, target: 'traces'}), '', `Traces with ${k}=${v}`);
    a.replaceChildren(chip);
    return a;
  })));
}

// order returns the spans depth-first under their parents (children by start), each with its depth and
// whether it has children. Spans whose parent is missing from the trace, or that sit in a parent cycle, are
// shown as roots.
function order(spans) {
  const ids = new Set(spans.map((s) => s.span_id));
  const kids = new Map();
  for (const s of spans) {
    const p = ids.has(s.parent_span_id) ? s.parent_span_id : '';
    if (!kids.has(p)) kids.set(p, []);
    kids.get(p).push(s);
  }
  for (const k of kids.values()) k.sort((a, b) => a.start - b.start);
  const out = [], seen = new Set();
  const walk = (s, depth) => {
    if (seen.has(s.span_id)) return;
    seen.add(s.span_id);
    out.push({span: s, depth, parent: kids.has(s.span_id)});
    for (const c of kids.get(s.span_id) || []) walk(c, depth + 1);
  };
  for (const s of kids.get('') || []) walk(s, 0);
  for (const s of spans) walk(s, 0); // cycles
  return out;
}

function waterfall(trace, spans, details) {
  const t0 = Math.min(...spans.map((s) => s.start));
  const total = Math.max(1, Math.max(...spans.map((s) => s.end)) - t0);
  const pct = (us) => (100 * us / total).toFixed(3) + '%';
  const ticks = el('div', {className: 'ticks', 'aria-hidden': 'true'},
    ...[0, 0.25, 0.5, 0.75, 1].map((f) => el('span', {style: `left:${f * 100}%`}, f ? duration(Math.round(f * total)) : '0')));
  const list = el('ol', {className: 'waterfall', 'aria-label': 'Spans by start time'});
  const collapsed = new Set();
  for (const {span: s, depth, parent} of order(spans)) {
    const row = el('button', {type: 'button', className: 'span-row' + (s.error ? ' error' : ''), 'data-span-id': s.span_id,
      'aria-pressed': 'false', title: `${s.service} ${s.name} — ${duration(s.duration)}`},
      el('span', {className: 'label', style: `padding-left:${depth * 14 + 20}px`},
        el('strong', {}, s.service), ' ', el('span', {className: 'name'}, s.name)),
      el('span', {className: 'lane'},
        el('span', {className: 'bar', style: `left:${pct(s.start - t0)};width:max(2px,${pct(s.duration)})`}),
        durationLabel(s, (s.start - t0) / total, (s.end - t0) / total)));
    row.addEventListener('click', () => select(s, trace, true));
    const li = el('li', {'data-depth': depth, 'data-span-id': s.span_id}, row);
    if (parent) {
      const toggle = el('button', {type: 'button', className: 'toggle', style: `left:${depth * 14 + 2}px`,
        'aria-expanded': 'true', 'aria-label': `Hide the spans under ${s.service} ${s.name}`}, '▾');
      toggle.addEventListener('click', () => {
        const open = collapsed.has(s.span_id);
        if (open) collapsed.delete(s.span_id); else collapsed.add(s.span_id);
        toggle.setAttribute('aria-expanded', String(open));
        toggle.textContent = open ? '▾' : '▸';
        toggle.setAttribute('aria-label', `${open ? 'Hide' : 'Show'} the spans under ${s.service} ${s.name}`);
        fold(list, collapsed);
      });
      li.prepend(toggle);
    }
    list.append(li);
  }
  list.addEventListener('keydown', (ev) => { // arrow keys move between the visible rows
    const rows = Array.from(list.querySelectorAll('li:not([hidden]) > .span-row'));
    const i = rows.indexOf(document.activeElement);
    const next = {ArrowDown: i + 1, ArrowUp: i - 1}[ev.key];
    if (i < 0 || next === undefined || !rows[next]) return;
    ev.preventDefault();
    rows[next].focus();
    rows[next].click();
  });
  return el('div', {className: 'waterfall-box'},
    el('div', {className: 'waterfall-head'}, el('span', {className: 'label'}, 'Service and operation'), el('span', {className: 'lane'}, ticks)),
    list);
}

// fold hides the rows under collapsed spans.
function fold(list, collapsed) {
  let hideBelow = Infinity; // rows deeper than this are under a collapsed span
  for (const li of list.children) {
    const depth = Number(li.dataset.depth);
    if (depth <= hideBelow) hideBelow = Infinity;
    li.hidden = depth > hideBelow;
    if (!li.hidden && collapsed.has(li.dataset.spanId)) hideBelow = depth;
  }
}

// durationLabel places a bar's duration right of the bar, or left of it when the bar ends near the right edge,
// or inside it when it spans nearly everything.
function durationLabel(s, from, to) {
  const pos = to <= 0.8 ? `left:${100 * to}%` : from >= 0.2 ? `right:${100 * (1 - from)}%` : `left:${100 * from}%`;
  const cls = to <= 0.8 ? 'after' : from >= 0.2 ? 'before' : 'inside';
  return el('span', {className: 'bar-label ' + cls, style: pos}, duration(s.duration));
}

// select shows a span in the details panel and records it in the URL (without a new history entry).
function select(s, trace, record) {
  for (const b of document.querySelectorAll('.span-row')) b.setAttribute('aria-pressed', String(b.dataset.spanId === s.span_id));
  if (record) {
    const p = params();
    p.set('span', s.span_id);
    history.replaceState(null, '', '?' + p);
  }
  const kv = (title, obj) => {
    const entries = Object.entries(obj || {}).sort(([a], [b]) => a.localeCompare(b));
    if (!entries.length) return null;
    return el('section', {}, el('h4', {}, title), el('table', {className: 'kv'}, el('tbody', {},
      ...entries.map(([k, v]) => el('tr', {}, el('th', {scope: 'row'}, k), el('td', {}, value(v)))))));
  };
  $('details').replaceChildren(...[
    el('h3', {}, s.service, ' ', el('span', {className: 'name'}, s.name)),
    el('table', {className: 'kv'}, el('tbody', {},
      ...[['Status', status(s)], ['Kind', s.kind], ['Duration', duration(s.duration)],
        ['Start', `${when(s.start)} UTC (+${duration(s.start - trace.start)})`], ['Span ID', s.span_id],
        ['Parent ID', s.parent_span_id || '—'], ['Scope', s.scope || '—']]
        .map(([k, v]) => el('tr', {}, el('th', {scope: 'row'}, k), el('td', {}, v))))),
    kv('Attributes', s.attr),
    kv('Resource', s.resource),
    s.events && s.events.length ? el('section', {}, el('h4', {}, 'Events'), el('ol', {className: 'events'},
      ...s.events.map((e) => el('li', {}, el('span', {className: 'offset'}, '+' + duration(e.time - s.start)), ' ', el('strong', {}, e.name),
        Object.keys(e.attr || {}).length ? chips(Object.entries(e.attr).map(([k, v]) => [k, value(v)])) : null)))) : null,
    s.links && s.links.length ? el('section', {}, el('h4', {}, 'Links'), el('ul', {className: 'links'},
      ...s.links.map((l) => el('li', {}, link(traceLink(l.trace_id, l.span_id), short(l.trace_id) + ' / ' + l.span_id),
        Object.keys(l.attr || {}).length ? chips(Object.entries(l.attr).map(([k, v]) => [k, value(v)])) : null)))) : null,
  ].filter(Boolean));
}

render();
