/** Renders a benchmark report: a terminal table, a markdown table (for the README) and an SVG chart of the speedups. */
import { describeRoofline } from '../src/runtime/roofline.js';
import { formatRecompute } from './recompute.js';
import { speedup, type BenchReport, type Peer, type Row, type Side } from './suite.js';

const ms = (s: Side | null | undefined) => (s ? `${s.stats.median.toFixed(s.stats.median < 10 ? 2 : 1)} [${s.stats.min.toFixed(1)}–${s.stats.max.toFixed(1)}]` : '—');
const ms1 = (s: Side | null | undefined) => (s ? s.stats.median.toFixed(s.stats.median < 10 ? 2 : 1) : '—');
/** Roofline bound of Kiln's kernels for this row / a side's median time: how close to the device's limit it ran. */
const roofPct = (r: Row, s: Side | null | undefined) => (s && r.work && Number.isFinite(r.work.boundMs) ? `${((100 * r.work.boundMs) / s.stats.median).toFixed(0)}%` : '—');
const ratio = (r: Row, p: Peer) => {
  const v = speedup(r, p);
  return Number.isFinite(v) ? `${v.toFixed(2)}×` : '—';
};
const tps = (r: Row, s: Side | null) => (s && r.tokens ? `${Math.round((r.tokens * 1000) / s.stats.median)}` : '');

function cells(r: Row): string[] {
  return [
    r.name,
    ms(r.kiln),
    ms(r.tfWebgpu),
    ms(r.tfCpu),
    ratio(r, 'tfWebgpu'),
    ratio(r, 'tfCpu'),
    `${ms1(r.jaxWebgpu)} / ${ms1(r.jaxWasm)}`,
    `${ratio(r, 'jaxWebgpu')} / ${ratio(r, 'jaxWasm')}`,
    r.kiln && r.kiln.stats.median > 0 && r.work?.flops ? `${(r.work.flops / (r.kiln.stats.median * 1e6)).toFixed(2)}` : '',
    `${roofPct(r, r.kiln)} / ${roofPct(r, r.tfWebgpu)} / ${roofPct(r, r.jaxWebgpu)}`,
    r.tokens ? `${tps(r, r.kiln)} / ${tps(r, r.tfWebgpu)} / ${tps(r, r.tfCpu) || '—'}` : '',
    r.kiln?.kernels !== undefined ? `${r.kiln.kernels}${r.tfWebgpu?.kernels !== undefined ? ` / ${r.tfWebgpu.kernels}` : ''}` : '',
    r.kiln?.deviceBytes ? `${(r.kiln.deviceBytes / 2 ** 20).toFixed(1)}${r.tfWebgpu?.deviceBytes ? ` / ${(r.tfWebgpu.deviceBytes / 2 ** 20).toFixed(1)}` : ''}` : '',
    r.kiln?.firstMs !== undefined ? `${(r.kiln.firstMs / 1000).toFixed(1)} / ${r.tfWebgpu?.firstMs !== undefined ? (r.tfWebgpu.firstMs / 1000).toFixed(1) : '—'}` : '',
    r.check ? (r.check.ok ? `ok (${r.check.relErr.toExponential(1)})` : `MISMATCH (${r.check.relErr.toExponential(1)})`) : '',
    Object.entries(r.jaxCheck ?? {}).map(([d, c]) => `${d} ${c.ok ? 'ok' : 'MISMATCH'} (${c.relErr.toExponential(1)})`).join(', '),
  ];
}

const HEAD = ['benchmark', 'Kiln ms [min–max]', 'TF.js WebGPU ms', 'TF.js CPU ms', 'vs WebGPU', 'vs CPU', 'jax-js webgpu / wasm ms', 'vs jax webgpu / wasm', 'Kiln GFLOP/s', 'of roofline K / W / J', 'tokens/s K / W / C', 'kernels K / W', 'MiB K / W', 'first s K / W', 'check', 'jax-js check'];

export function formatTable(rep: BenchReport): string {
  const rows = [HEAD, ...rep.rows.map(cells)];
  const w = HEAD.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i])).join('  ');
  const out = [`device: ${rep.device}${rep.quick ? ' (quick sizes)' : ''}`];
  if (rep.roofline) out.push(describeRoofline(rep.roofline), '');
  if (rep.jaxSkipped) out.push(rep.jaxSkipped, '');
  if (rep.rows.length) out.push(line(HEAD), w.map((n) => '-'.repeat(n)).join('  '), ...rep.rows.map((r) => line(cells(r))));
  if (rep.recompute) out.push('', formatRecompute(rep.recompute));
  if (rep.rows.length) out.push('', 'of roofline: the roofline bound of Kiln\'s kernels for the row (each kernel\'s min time at the measured FMA peak and bandwidth, plus a launch) / each side\'s median time (K Kiln, W TF.js WebGPU, J jax-js webgpu)');
  for (const r of rep.rows) if (r.note) out.push(`note (${r.name}): ${r.note}`);
  if (rep.targets.length) {
    out.push('', 'targets:');
    for (const t of rep.targets) out.push(`  ${t.met ? 'MET   ' : 'MISSED'} ${t.what}: want ${t.want}, got ${t.got}`);
  }
  if (rep.profile) out.push('', 'where the time goes (Kiln profile):', rep.profile);
  return out.join('\n');
}

export function formatMarkdown(rep: BenchReport): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const out = rep.rows.length ? [`| ${HEAD.join(' | ')} |`, `| ${HEAD.map(() => '---').join(' | ')} |`, ...rep.rows.map((r) => `| ${cells(r).map(esc).join(' | ')} |`)] : [];
  if (rep.recompute) out.push(...(out.length ? [''] : []), formatRecompute(rep.recompute));
  out.push('', `Device: ${rep.device}. Speedup = peer median / Kiln median (higher is better for Kiln).`);
  if (rep.roofline) out.push('', describeRoofline(rep.roofline).replace(/\n/g, '  \n'));
  return out.join('\n');
}

export function ratioChartSvg(rep: BenchReport): string {
  const rows = rep.rows.filter((r) => Number.isFinite(speedup(r, 'tfWebgpu')));
  const W = 860, rowH = 26, left = 330, top = 40;
  const H = top + rows.length * rowH + 40;
  const vals = rows.flatMap((r) => [speedup(r, 'tfWebgpu'), speedup(r, 'tfCpu')].filter(Number.isFinite));
  const max = Math.max(1.5, ...vals.map((v) => Math.log10(v)));
  const min = Math.min(-0.5, ...vals.map((v) => Math.log10(v)));
  const x = (v: number) => left + ((W - left - 30) * (Math.log10(v) - min)) / (max - min);
  const esc = (s: string) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]!);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">Kiln speedup over TF.js (log scale; right of 1× = Kiln faster) — ${esc(rep.device)}</text>`,
    `<line x1="${x(1)}" y1="${top - 5}" x2="${x(1)}" y2="${H - 30}" stroke="#444"/>`,
    `<text x="${x(1)}" y="${H - 14}" text-anchor="middle">1×</text>`,
  ];
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    parts.push(`<text x="${left - 8}" y="${y + 15}" text-anchor="end">${esc(r.name.length > 48 ? r.name.slice(0, 47) + '…' : r.name)}</text>`);
    const bar = (v: number, dy: number, color: string) => {
      if (!Number.isFinite(v)) return;
      const a = Math.min(x(1), x(v));
      parts.push(`<rect x="${a}" y="${y + dy}" width="${Math.abs(x(v) - x(1))}" height="9" fill="${color}"/>`);
      parts.push(`<text x="${x(v) + (v >= 1 ? 4 : -4)}" y="${y + dy + 8}" font-size="10" text-anchor="${v >= 1 ? 'start' : 'end'}">${v.toFixed(2)}×</text>`);
    };
    bar(speedup(r, 'tfWebgpu'), 2, '#1f77b4');
    bar(speedup(r, 'tfCpu'), 12, '#ff7f0e');
  });
  parts.push(`<rect x="${W - 200}" y="${H - 24}" width="10" height="10" fill="#1f77b4"/><text x="${W - 185}" y="${H - 15}">vs TF.js WebGPU</text>`);
  parts.push(`<rect x="${W - 90}" y="${H - 24}" width="10" height="10" fill="#ff7f0e"/><text x="${W - 75}" y="${H - 15}">vs TF.js CPU</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
