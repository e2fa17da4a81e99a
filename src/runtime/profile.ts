/**
 * A profile against the device's limits: each kernel's measured time beside its FLOPs and bytes (src/schedule/
 * cost.ts), the GFLOP/s and GB/s it achieved, and the fraction of its roofline bound it reached (bound time /
 * measured time: 100% means the kernel runs at the device's limit for its arithmetic intensity); then the same
 * grouped by kernel family with each family's share of the total.
 */
import { scheduleCosts, type KernelCost, type KernelFamily } from '../schedule/cost.js';
import type { Schedule } from '../schedule/schedule.js';
import type { KernelTiming } from './executable.js';
import { boundMs, type Roofline } from './roofline.js';

export interface KernelReport extends KernelCost {
  label: string;
  ops: string;
  ms: number;
  gflops: number;
  gbps: number;
  /** Roofline bound time / measured time (NaN without a roofline). */
  ofRoofline: number;
}

export interface FamilyReport {
  family: KernelFamily;
  kernels: number;
  ms: number;
  share: number;
  flops: number;
  bytes: number;
  gflops: number;
  ofRoofline: number;
}

export function costProfile(s: Schedule, timings: KernelTiming[], roofline?: Roofline): KernelReport[] {
  const costs = new Map(scheduleCosts(s).map((c) => [c.kernel, c]));
  return timings.map((t) => {
    const c = costs.get(t.kernel)!;
    const sec = t.ms / 1000;
    const bound = roofline ? boundMs(roofline, c.flops, c.bytes) : NaN;
    return { ...c, label: t.label, ops: t.ops, ms: t.ms, gflops: sec > 0 ? c.flops / sec / 1e9 : 0, gbps: sec > 0 ? c.bytes / sec / 1e9 : 0, ofRoofline: t.ms > 0 ? bound / t.ms : NaN };
  });
}

export function familyProfile(rows: KernelReport[], roofline?: Roofline): FamilyReport[] {
  const total = rows.reduce((a, r) => a + r.ms, 0) || 1;
  const by = new Map<KernelFamily, KernelReport[]>();
  for (const r of rows) by.set(r.family, [...(by.get(r.family) ?? []), r]);
  return [...by.entries()]
    .map(([family, rs]) => {
      const ms = rs.reduce((a, r) => a + r.ms, 0);
      const flops = rs.reduce((a, r) => a + r.flops, 0);
      const bytes = rs.reduce((a, r) => a + r.bytes, 0);
      const bound = roofline ? rs.reduce((a, r) => a + boundMs(roofline, r.flops, r.bytes), 0) : NaN;
      return { family, kernels: rs.length, ms, share: ms / total, flops, bytes, gflops: ms > 0 ? flops / ms / 1e6 : 0, ofRoofline: ms > 0 ? bound / ms : NaN };
    })
    .sort((a, b) => b.ms - a.ms);
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : '—');

/** Kernels by time (longest first) with FLOPs, bytes, achieved rates and the roofline fraction. */
export function formatCostProfile(rows: KernelReport[], roofline?: Roofline, top = 30): string {
  const total = rows.reduce((a, t) => a + t.ms, 0);
  const src = roofline ? `roofline ${roofline.gflops.toFixed(1)} GFLOP/s, ${roofline.gbps.toFixed(2)} GB/s, ${roofline.launchUs.toFixed(0)} µs/launch` : 'no roofline';
  const lines = [`kernel  family              time ms      %   MFLOP      MB  GFLOP/s   GB/s  of roof  ops   (total ${total.toFixed(3)} ms; ${src})`];
  for (const t of [...rows].sort((a, b) => b.ms - a.ms).slice(0, top)) {
    const ops = t.ops.length > 50 ? `${t.ops.slice(0, 47)}...` : t.ops;
    lines.push(
      `${t.label.padEnd(7)} ${t.family.padEnd(18)} ${t.ms.toFixed(3).padStart(8)} ${((100 * t.ms) / (total || 1)).toFixed(1).padStart(6)} ${(t.flops / 1e6).toFixed(2).padStart(7)} ${(t.bytes / 1e6).toFixed(2).padStart(7)} ${t.gflops.toFixed(2).padStart(8)} ${t.gbps.toFixed(2).padStart(6)} ${pct(t.ofRoofline).padStart(8)}  ${ops}`,
    );
  }
  if (rows.length > top) lines.push(`... ${rows.length - top} more kernels`);
  return lines.join('\n');
}

/** The step's time by kernel family. */
export function formatFamilies(fams: FamilyReport[]): string {
  const lines = ['family              kernels   time ms   share  GFLOP/s  of roof'];
  for (const f of fams) lines.push(`${f.family.padEnd(19)} ${String(f.kernels).padStart(7)} ${f.ms.toFixed(2).padStart(9)} ${pct(f.share).padStart(7)} ${f.gflops.toFixed(2).padStart(8)} ${pct(f.ofRoofline).padStart(8)}`);
  return lines.join('\n');
}
