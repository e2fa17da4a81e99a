/**
 * Step runners for partitioned programs. The trainer hands them the whole batch and whole (unsharded) parameters,
 * as it does a single-device runner:
 *   - data parallel: the batch is split over the devices (shardBatch, with each shard's weight and rank);
 *   - tensor parallel: every device gets the whole batch;
 *   - split parameters (ZeRO-sharded optimizer state along axis 0; tensor-parallel MLP weights and their optimizer
 *     state along their split axis) start as slices of the whole initialisation, are gathered for checkpoints and
 *     sliced again on resume, so checkpoints never depend on the device count.
 * They return device 0's outputs (the loss is all-reduced: the same on every device).
 */
import type { Graph } from '../ir/graph.js';
import { updatedParam } from '../ir/graph.js';
import { initParam } from '../ir/init.js';
import type { AttrsOf } from '../ir/op.js';
import { combineCollective, shard } from '../ir/ops/collective.js';
import type { HostTensor } from '../ir/tensor.js';
import { interpretSharded } from '../interp/sharded.js';
import type { KilnDevice } from '../runtime/device.js';
import type { MultiDeviceExecutable } from '../runtime/multi.js';
import type { SplitOptions } from './segments.js';
import type { StepRunner } from '../train/runner.js';
import { shardBatch } from './feed.js';
import { tensorShards } from './tensor-parallel.js';
import { shardedParams, zeroShardedParams } from './zero.js';

export interface Mesh {
  dp: number;
  tp: number;
}

/** The input whose non-ignored entries weight each shard (targets for causal/prefix/span, labels for MLM). */
const countedInput = (g: Graph) => ['targets', 'labels'].find((n) => g.nodes.some((x) => x.op === 'input' && (x.attrs as AttrsOf<'input'>).name === n));

const pick = (o: Record<string, HostTensor>, names: string[]) => Object.fromEntries(names.map((n) => [n, o[n]]));

/** Every parameter a device holds one slice of, with the axis it is split along. */
export function splitParams(program: Graph, mesh: Mesh): Map<string, number> {
  const out = new Map<string, number>();
  for (const name of shardedParams(program, mesh.dp)) out.set(name, 0);
  const tp = tensorShards(program, mesh.tp, true);
  for (const name of zeroShardedParams(program, mesh.dp)) tp.set(name, 0); // ZeRO-3: parameters and their state, rows
  for (const [name, axis] of tp) out.set(name, axis);
  for (const n of program.nodes) {
    const name = n.op === 'param' ? (n.attrs as AttrsOf<'param'>).name : '';
    const base = /^opt\.[^.]+\.(.+)$/.exec(name)?.[1];
    if (base !== undefined && tp.has(base)) out.set(name, tp.get(base)!);
  }
  return out;
}

/** Splitting and gathering parameters and batches for one mesh. */
class Layout {
  readonly n: number;
  readonly split: Map<string, number>;
  private readonly counted: string | undefined;
  constructor(
    readonly program: Graph,
    readonly mesh: Mesh,
  ) {
    this.n = mesh.dp * mesh.tp;
    this.split = splitParams(program, mesh);
    this.counted = countedInput(program);
  }
  feeds(inputs: Record<string, HostTensor>): Record<string, HostTensor>[] {
    return this.mesh.dp > 1 ? shardBatch(inputs, this.mesh.dp, this.counted) : Array.from({ length: this.n }, () => inputs);
  }
  /** Device d's slice of a whole parameter. */
  slice(name: string, whole: HostTensor, d: number): HostTensor {
    const axis = this.split.get(name);
    return axis === undefined ? whole : shard(whole, axis, this.n, d);
  }
  gather(name: string, parts: HostTensor[]): HostTensor {
    const axis = this.split.get(name);
    return axis === undefined ? parts[0] : combineCollective('all_gather', { size: this.n, axis }, parts)[0];
  }
  /** Whole initial values of the split parameters (drawn at the whole shape, as one device would). */
  wholeInit(seed: number): Record<string, HostTensor> {
    const out: Record<string, HostTensor> = {};
    for (const n of this.program.nodes) {
      const a = n.op === 'param' ? (n.attrs as AttrsOf<'param'>) : undefined;
      const axis = a ? this.split.get(a.name) : undefined;
      if (!a || axis === undefined) continue;
      out[a.name] = initParam(a.init, { dtype: n.type.dtype, shape: n.type.shape.map((s, i) => (i === axis ? s * this.n : s)) }, a.name, seed);
    }
    return out;
  }
}

export class DataParallelDeviceRunner implements StepRunner {
  readonly paramNames: string[];
  private constructor(
    readonly exe: MultiDeviceExecutable,
    private readonly layout: Layout,
  ) {
    this.paramNames = exe.paramNames;
  }

  /** `split.bucketBytes`: exchange the gradients in buckets while the backward pass runs (SplitOptions). */
  static async create(program: Graph, devices: KilnDevice[], seed: number, mesh: Mesh = { dp: devices.length, tp: 1 }, split: SplitOptions = {}): Promise<DataParallelDeviceRunner> {
    const { MultiDeviceExecutable } = await import('../runtime/multi.js');
    const exe = await MultiDeviceExecutable.create(devices.map(() => program), devices, { seed, ...split });
    const r = new DataParallelDeviceRunner(exe, new Layout(program, mesh));
    await r.setParams(r.layout.wholeInit(seed));
    return r;
  }

  async run(inputs: Record<string, HostTensor>, download: string[]): Promise<Record<string, HostTensor>> {
    const outs = await this.exe.run(this.layout.feeds(inputs));
    return pick(outs[0], download);
  }

  async getParams(names = this.paramNames): Promise<Record<string, HostTensor>> {
    const out: Record<string, HostTensor> = {};
    for (const n of names) {
      out[n] = this.layout.split.has(n) ? this.layout.gather(n, await Promise.all(this.exe.devices.map((_, d) => this.exe.getParam(n, d)))) : await this.exe.getParam(n);
    }
    return out;
  }

  async setParams(p: Record<string, HostTensor>): Promise<void> {
    for (const [k, v] of Object.entries(p)) {
      if (!this.paramNames.includes(k)) continue;
      if (this.layout.split.has(k)) this.exe.devices.forEach((_, d) => this.exe.setParam(k, this.layout.slice(k, v, d), d));
      else this.exe.setParam(k, v);
    }
  }

  destroy(): void {
    this.exe.destroy();
  }
}

/** The same on simulated devices in the reference interpreter (`--device interp --parallel dp=N`). */
export class DataParallelInterpreterRunner implements StepRunner {
  readonly paramNames: string[];
  private readonly params: Record<string, HostTensor>[];
  private readonly layout: Layout;

  constructor(
    private readonly program: Graph,
    dp: number,
    seed: number,
    mesh: Mesh = { dp, tp: 1 },
  ) {
    this.layout = new Layout(program, mesh);
    const whole = this.layout.wholeInit(seed);
    this.params = Array.from({ length: this.layout.n }, (_, d) =>
      Object.fromEntries(
        program.nodes
          .filter((n) => n.op === 'param')
          .map((n) => {
            const a = n.attrs as AttrsOf<'param'>;
            return [a.name, whole[a.name] ? this.layout.slice(a.name, whole[a.name], d) : initParam(a.init, n.type, a.name, seed)];
          }),
      ),
    );
    this.paramNames = Object.keys(this.params[0]);
  }

  async run(inputs: Record<string, HostTensor>, download: string[]): Promise<Record<string, HostTensor>> {
    const feeds = this.layout.feeds(inputs);
    const outs = interpretSharded(Array(this.layout.n).fill(this.program), { feeds: feeds.map((s, d) => ({ inputs: s, params: this.params[d] })) });
    outs.forEach((o, d) => {
      for (const x of this.program.outputs) {
        const p = updatedParam(x);
        if (p !== undefined) this.params[d][p] = o[x.name];
      }
    });
    return pick(outs[0], download);
  }

  async getParams(names = this.paramNames): Promise<Record<string, HostTensor>> {
    return Object.fromEntries(names.map((n) => [n, this.layout.gather(n, this.params.map((ps) => ps[n]))]));
  }

  async setParams(p: Record<string, HostTensor>): Promise<void> {
    for (const [k, v] of Object.entries(p)) this.params.forEach((ps, d) => k in ps && (ps[k] = this.layout.slice(k, v, d)));
  }

  destroy(): void {}
}
