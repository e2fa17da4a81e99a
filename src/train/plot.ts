/** The loss curve as a standalone SVG: training loss per step, validation loss points, labelled axes. */
export interface CurveData {
  train: { step: number; loss: number }[];
  val: { step: number; loss: number }[];
  title: string;
  /** A horizontal reference line (e.g. the unigram entropy of the corpus). */
  reference?: { value: number; label: string };
  /** More training curves in the same axes (e.g. the same run in other precisions); `train` is labelled trainLabel. */
  more?: { label: string; points: { step: number; loss: number }[] }[];
  trainLabel?: string;
}

const MORE_COLORS = ['#ff7f0e', '#2ca02c', '#9467bd', '#8c564b'];

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

export function lossCurveSvg(d: CurveData, width = 720, height = 420): string {
  const m = { l: 60, r: 20, t: 40, b: 50 };
  const all = [...d.train, ...d.val, ...(d.more ?? []).flatMap((m) => m.points)];
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  const ys = [...all.map((p) => p.loss), ...(d.reference ? [d.reference.value] : [])].filter(Number.isFinite);
  const yMax = Math.max(...ys, 1e-3) * 1.05;
  const yMin = Math.max(0, Math.min(...ys) * 0.95);
  const x = (s: number) => m.l + ((width - m.l - m.r) * s) / maxStep;
  const y = (v: number) => height - m.b - ((height - m.t - m.b) * (v - yMin)) / Math.max(1e-9, yMax - yMin);
  const pathOf = (pts: { step: number; loss: number }[]) => pts.filter((p) => Number.isFinite(p.loss)).map((p, i) => `${i ? 'L' : 'M'}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
  const path = pathOf(d.train);
  const ticks = 5;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15">${esc(d.title)}</text>`,
    `<line x1="${m.l}" y1="${height - m.b}" x2="${width - m.r}" y2="${height - m.b}" stroke="black"/>`,
    `<line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${height - m.b}" stroke="black"/>`,
  ];
  for (let i = 0; i <= ticks; i++) {
    const v = yMin + ((yMax - yMin) * i) / ticks;
    const s = Math.round((maxStep * i) / ticks);
    parts.push(`<text x="${m.l - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(2)}</text>`);
    parts.push(`<line x1="${m.l}" y1="${y(v)}" x2="${width - m.r}" y2="${y(v)}" stroke="#eee"/>`);
    parts.push(`<text x="${x(s)}" y="${height - m.b + 18}" text-anchor="middle">${s}</text>`);
  }
  parts.push(`<text x="${width / 2}" y="${height - 10}" text-anchor="middle">step</text>`);
  parts.push(`<text x="16" y="${height / 2}" text-anchor="middle" transform="rotate(-90 16 ${height / 2})">loss (nats/token)</text>`);
  if (d.reference) {
    parts.push(`<line x1="${m.l}" y1="${y(d.reference.value)}" x2="${width - m.r}" y2="${y(d.reference.value)}" stroke="#999" stroke-dasharray="5,4"/>`);
    parts.push(`<text x="${width - m.r - 4}" y="${y(d.reference.value) - 5}" text-anchor="end" fill="#666">${esc(d.reference.label)}</text>`);
  }
  parts.push(`<path d="${path}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`);
  for (const p of d.val) parts.push(`<circle cx="${x(p.step)}" cy="${y(p.loss)}" r="3.5" fill="#d62728"/>`);
  (d.more ?? []).forEach((c, i) => parts.push(`<path d="${pathOf(c.points)}" fill="none" stroke="${MORE_COLORS[i % MORE_COLORS.length]}" stroke-width="1.2" opacity="0.85"/>`));
  parts.push(`<text x="${width - m.r - 4}" y="${m.t + 12}" text-anchor="end" fill="#1f77b4">${esc(d.trainLabel ?? 'train')}</text>`);
  (d.more ?? []).forEach((c, i) => parts.push(`<text x="${width - m.r - 4}" y="${m.t + 28 + 16 * i}" text-anchor="end" fill="${MORE_COLORS[i % MORE_COLORS.length]}">${esc(c.label)}</text>`));
  if (d.val.length) parts.push(`<text x="${width - m.r - 4}" y="${m.t + 28 + 16 * (d.more ?? []).length}" text-anchor="end" fill="#d62728">validation</text>`);
  parts.push('</svg>');
  return parts.join('\n');
}
