/**
 * Data-parallel step runners: the trainer hands them the whole batch, as it does a single-device runner; they
 * split it over the dp devices (shardBatch), run the per-device program (the `shard` pass's output) on every
 * device and return device 0's outputs (the loss is already all-reduced, the same on every device).
 */
import type { Graph } from '../ir/graph.js';
import { updatedParam } from '../ir/graph.js';
import { initParam } from '../ir/init.js';
import type { AttrsOf } from '../ir/op.js';
import type { HostTensor } from '../ir/tensor.js';
import { interpretSharded } from '../interp/sharded.js';
import type { KilnDevice } from '../runtime/device.js';
import type { MultiDeviceExecutable } from '../runtime/multi.js';
import type { StepRunner } from '../train/runner.js';
import { combineCollective } from '../ir/ops/collective.js';
import { rowsOf, shardBatch } from './feed.js';
import { shardedParams } from './zero.js';

/** A ZeRO-sharded parameter as a checkpoint holds it: every device's rows, in rank order. */
const unshard = (ts: HostTensor[]) => combineCollective('all_gather', { size: ts.length, axis: 0 }, ts)[0];

/** The input whose non-ignored entries weight each shard (targets for causal/prefix/span, labels for MLM). */
const countedInput = (g: Graph) => ['targets', 'labels'].find((n) => g.nodes.some((x) => x.op === 'input' && (x.attrs as AttrsOf<'input'>).name === n));

const pick = (o: Record<string, HostTensor>, names: string[]) => Object.fromEntries(names.map((n) => [n, o[n]]));

export class DataParallelDeviceRunner implements StepRunner {
  readonly paramNames: string[];
  private constructor(
    readonly exe: MultiDeviceExecutable,
    private readonly counted: string | undefined,
    private readonly sharded: Set<string>,
  ) {
    this.paramNames = exe.paramNames;
  }

  static async create(program: Graph, devices: KilnDevice[], seed: number): Promise<DataParallelDeviceRunner> {
    const { MultiDeviceExecutable } = await import('../runtime/multi.js');
    const exe = await MultiDeviceExecutable.create(devices.map(() => program), devices, { seed });
    return new DataParallelDeviceRunner(exe, countedInput(program), shardedParams(program, devices.length));
  }

  async run(inputs: Record<string, HostTensor>, download: string[]): Promise<Record<string, HostTensor>> {
    const outs = await this.exe.run(shardBatch(inputs, this.exe.devices.length, this.counted));
    return pick(outs[0], download);
  }

  async getParams(names = this.paramNames): Promise<Record<string, HostTensor>> {
    const out: Record<string, HostTensor> = {};
    for (const n of names) {
      out[n] = this.sharded.has(n) ? unshard(await Promise.all(this.exe.devices.map((_, d) => this.exe.getParam(n, d)))) : await this.exe.getParam(n);
    }
    return out;
  }

  async setParams(p: Record<string, HostTensor>): Promise<void> {
    const dp = this.exe.devices.length;
    for (const [k, v] of Object.entries(p)) {
      if (!this.paramNames.includes(k)) continue;
      if (this.sharded.has(k)) for (let d = 0; d < dp; d++) this.exe.setParam(k, rowsOf(v, dp, d), d);
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
  private readonly counted: string | undefined;
  private readonly sharded: Set<string>;

  constructor(
    private readonly program: Graph,
    private readonly dp: number,
    seed: number,
  ) {
    const init = () =>
      Object.fromEntries(program.nodes.filter((n) => n.op === 'param').map((n) => [(n.attrs as AttrsOf<'param'>).name, initParam((n.attrs as AttrsOf<'param'>).init, n.type, (n.attrs as AttrsOf<'param'>).name, seed)]));
    this.params = Array.from({ length: dp }, init);
    this.paramNames = Object.keys(this.params[0]);
    this.counted = countedInput(program);
    this.sharded = shardedParams(program, dp);
  }

  async run(inputs: Record<string, HostTensor>, download: string[]): Promise<Record<string, HostTensor>> {
    const shards = shardBatch(inputs, this.dp, this.counted);
    const outs = interpretSharded(Array(this.dp).fill(this.program), { feeds: shards.map((s, d) => ({ inputs: s, params: this.params[d] })) });
    outs.forEach((o, d) => {
      for (const x of this.program.outputs) {
        const p = updatedParam(x);
        if (p !== undefined) this.params[d][p] = o[x.name];
      }
    });
    return pick(outs[0], download);
  }

  async getParams(names = this.paramNames): Promise<Record<string, HostTensor>> {
    return Object.fromEntries(names.map((n) => [n, this.sharded.has(n) ? unshard(this.params.map((ps) => ps[n])) : this.params[0][n]]));
  }

  async setParams(p: Record<string, HostTensor>): Promise<void> {
    for (const [k, v] of Object.entries(p)) this.params.forEach((ps, d) => k in ps && (ps[k] = this.sharded.has(k) ? rowsOf(v, this.dp, d) : v));
  }

  destroy(): void {}
}
