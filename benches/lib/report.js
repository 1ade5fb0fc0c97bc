/**
 * Turns a results object into a markdown table and an SVG chart (written by hand: no
 * chart library): one panel per throughput workload with a bar per system (median,
 * min–max whisker), and one panel of enqueue→start latency (p50 and p99).
 */
'use strict';

const WORKLOADS = {
  single: 'single enqueue, 16 in flight (tasks/s)',
  bulk: 'bulk enqueue, 1,000 per call (tasks/s)',
  drain: 'claim + complete (tasks/s)',
};

const fmt = (x) => (x >= 100 ? Math.round(x).toLocaleString('en-US') : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** Markdown: throughput (median, min–max), latency, and the targets. */
function markdown(results) {
  const out = [];
  out.push('| workload | system | median | min – max | tasks per rep |', '|---|---|---:|---:|---:|');
  for (const w of Object.keys(WORKLOADS)) {
    for (const [system, r] of Object.entries(results.throughput[w] || {})) {
      out.push(`| ${WORKLOADS[w]} | ${system} | ${fmt(r.median)} | ${fmt(r.min)} – ${fmt(r.max)} | ${r.tasks.toLocaleString('en-US')} |`);
    }
  }
  out.push('', `| enqueue→start at ${results.config.latencyRate}/s | p50 ms | p99 ms | max ms | (median of reps; min–max of p99) |`, '|---|---:|---:|---:|---:|');
  for (const [system, r] of Object.entries(results.latency || {})) {
    out.push(`| ${system} | ${fmt(r.p50.median)} | ${fmt(r.p99.median)} | ${fmt(r.max.median)} | ${fmt(r.p99.min)} – ${fmt(r.p99.max)} |`);
  }
  const v = results.versions && results.versions.newest;
  if (v) out.push('', `The "(Node ${v.node.replace(/^v(\d+).*/, '$1')})" rows run in Node ${v.node} child processes (benches/newest): pg-boss ${v.pgBoss}, graphile-worker ${v.graphileWorker}, pg ${v.pg}, each in a schema of its own.`);
  if (results.failures && results.failures.length) {
    out.push('', '| failed run (not counted) | rep | error |', '|---|---:|---|');
    for (const f of results.failures) out.push(`| ${f.workload} · ${f.system} | ${f.rep + 1} | ${f.error.replace(/\|/g, '/')} |`);
  }
  if (results.targets && results.targets.length) {
    out.push('', '| target | measured | met |', '|---|---|---|');
    for (const t of results.targets) out.push(`| ${t.target} | ${t.measured} | ${t.met ? 'yes' : '**no**'} |`);
  }
  return out.join('\n');
}

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf', '#393b79', '#637939', '#843c39'];

/** SVG: a horizontal bar panel per workload, then latency. */
function svg(results) {
  const systems = [];
  for (const w of Object.keys(WORKLOADS)) for (const s of Object.keys(results.throughput[w] || {})) if (!systems.includes(s)) systems.push(s);
  for (const s of Object.keys(results.latency || {})) if (!systems.includes(s)) systems.push(s);
  const color = (s) => PALETTE[systems.indexOf(s) % PALETTE.length];
  const W = 940;
  // room for the longest label, "graphile-worker 0.18 (Node 22) p99"
  const labelW = 230;
  const barH = 16;
  const gap = 4;
  const plotW = W - labelW - 120;
  const parts = [];
  let y = 30;
  parts.push(`<text x="10" y="20" font-size="15" font-weight="bold">${esc(results.title || 'database-connector benchmarks')}</text>`);
  const panel = (title, rows, unit) => {
    y += 14;
    parts.push(`<text x="10" y="${y}" font-size="13" font-weight="bold">${esc(title)}</text>`);
    y += 8;
    const max = Math.max(...rows.map((r) => r.max || r.value), 1);
    for (const r of rows) {
      const w = (r.value / max) * plotW;
      parts.push(`<text x="${labelW - 6}" y="${y + barH - 4}" font-size="11" text-anchor="end">${esc(r.label)}</text>`);
      parts.push(`<rect x="${labelW}" y="${y}" width="${Math.max(1, w).toFixed(1)}" height="${barH}" fill="${r.color}"/>`);
      if (r.min !== undefined && r.max !== undefined) {
        const x1 = labelW + (r.min / max) * plotW;
        const x2 = labelW + (r.max / max) * plotW;
        parts.push(`<line x1="${x1.toFixed(1)}" x2="${x2.toFixed(1)}" y1="${y + barH / 2}" y2="${y + barH / 2}" stroke="#000" stroke-width="1.5"/>`);
      }
      parts.push(`<text x="${labelW + Math.max(w, r.max ? (r.max / max) * plotW : 0) + 6}" y="${y + barH - 4}" font-size="11">${esc(fmt(r.value))} ${unit}</text>`);
      y += barH + gap;
    }
    y += 10;
  };
  for (const [w, title] of Object.entries(WORKLOADS)) {
    const rows = Object.entries(results.throughput[w] || {}).map(([s, r]) => ({ label: s, value: r.median, min: r.min, max: r.max, color: color(s) }));
    if (rows.length) panel(title, rows, '/s');
  }
  const lat = Object.entries(results.latency || {});
  if (lat.length) {
    const rows = [];
    for (const [s, r] of lat) {
      rows.push({ label: `${s} p50`, value: r.p50.median, min: r.p50.min, max: r.p50.max, color: color(s) });
      rows.push({ label: `${s} p99`, value: r.p99.median, min: r.p99.min, max: r.p99.max, color: color(s) });
    }
    panel(`enqueue→start latency at ${results.config.latencyRate} tasks/s (ms, lower is better)`, rows, 'ms');
  }
  parts.push(`<text x="10" y="${y + 4}" font-size="10" fill="#555">${esc(results.caption || '')}</text>`);
  y += 14;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${y}" viewBox="0 0 ${W} ${y}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`;
}

module.exports = { markdown, svg, WORKLOADS };
