/**
 * Step runners for pipeline-parallel training (`kiln train --pp N --micro-batches M`). The trainer hands them the
 * whole batch and whole parameters, as it does a single-device runner: the batch is split into M micro-batches
 * along its first axis, each weighted by its share of the batch's counted targets (so the accumulated gradient is
 * the whole batch's), and the schedule (GPipe or 1F1B) runs through `runPipelineStep`. A parameter lives on the
 * stage(s) that read it; checkpoints get every parameter and optimizer state whole, never the accumulators (zero
 * between steps), so a pipeline checkpoint resumes on one device or with another pp, and the other way round.
 */
import { KilnError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import { updatedParam, type Graph, type GraphOutput } from '../ir/graph.js';
import { initParam } from '../ir/init.js';
import type { AttrsOf } from '../ir/op.js';
import { recvChannel } from '../ir/ops/p2p.js';
import type { HostTensor } from '../ir/tensor.js';
import { interpret } from '../interp/interpreter.js';
import type { KilnDevice } from '../runtime/device.js';
import type { Executable } from '../runtime/executable.js';
import type { StepRunner } from '../train/runner.js';
import { shardBatch } from './feed.js';
import { DP_WEIGHT_INPUT } from './mesh.js';
import type { PipelineProgram } from './pipeline-parallel.js';
import { pipelineSchedule, runPipelineStep, type Action, type DeviceHeld, type PhaseName, type PhaseRunner, type PipelineScheduleKind, type PipelineStepResult } from './pipeline-schedule.js';

const PHASES: PhaseName[] = ['fwd', 'bwd', 'dpsync', 'tie', 'norm', 'update'];
const isAcc = (name: string) => name.startsWith('acc.');

/** The input whose non-ignored entries weight the micro-batches (as in data parallelism). */
const countedInput = (g: Graph) => ['targets', 'labels'].find((n) => g.nodes.some((x) => x.op === 'input' && (x.attrs as AttrsOf<'input'>).name === n));

/**
 * Splits a whole batch into dp x M micro-batches (replica r runs micro-batches r*M .. r*M+M-1), each with its
 * `loss_weight`: its share of the whole batch's counted targets.
 */
export function microBatches(prog: PipelineProgram, inputs: Record<string, HostTensor>, M: number): Record<string, HostTensor>[] {
  const last = prog.devices[prog.pp - 1];
  const counted = countedInput(last.fwd) ?? countedInput(last.bwd);
  const rows = Object.fromEntries(Object.entries(inputs).filter(([k]) => k !== 'loss_weight' && k !== 'apply'));
  return shardBatch(rows, prog.dp * M, counted).map((m) => ({ ...m, loss_weight: m[DP_WEIGHT_INPUT] }));
}

/** Every parameter of a device's programs (name -> node), in first-seen order. */
function stageParams(prog: PipelineProgram, s: number): Map<string, Graph['nodes'][number]> {
  const out = new Map<string, Graph['nodes'][number]>();
  const st = prog.devices[s];
  for (const ph of PHASES) for (const n of st[ph]?.nodes ?? []) if (n.op === 'param' && !out.has((n.attrs as AttrsOf<'param'>).name)) out.set((n.attrs as AttrsOf<'param'>).name, n);
  return out;
}

export interface PipelineStats {
  /** The last step's executor numbers. */
  last?: PipelineStepResult;
}

abstract class PipelineRunnerBase implements StepRunner {
  readonly paramNames: string[];
  readonly schedule: Action[][];
  readonly stats: PipelineStats = {};
  /** Which devices hold each parameter. */
  protected readonly where = new Map<string, number[]>();

  constructor(
    readonly prog: PipelineProgram,
    readonly kind: PipelineScheduleKind,
    readonly M: number,
  ) {
    // device r*pp + s runs stage s's schedule over replica r's micro-batches
    const base = pipelineSchedule(kind, prog.pp, M);
    this.schedule = prog.devices.map((_, d) => base[d % prog.pp].map((a) => ({ ...a, mb: a.mb + Math.floor(d / prog.pp) * M })));
    for (let s = 0; s < prog.devices.length; s++) for (const name of stageParams(prog, s).keys()) this.where.set(name, [...(this.where.get(name) ?? []), s]);
    this.paramNames = [...this.where.keys()].filter((n) => !isAcc(n));
  }

  protected abstract phase: PhaseRunner;
  /** Stash values the runner keeps on its devices (none: the host keeps them). */
  protected deviceHeld: DeviceHeld = () => new Set();
  protected abstract getOne(stage: number, name: string): Promise<HostTensor>;
  protected abstract setOne(stage: number, name: string, v: HostTensor): void;

  async run(inputs: Record<string, HostTensor>, download: string[]): Promise<Record<string, HostTensor>> {
    const micro = microBatches(this.prog, inputs, this.M);
    const r = await runPipelineStep(this.prog.devices, this.schedule, micro, inputs, this.phase, this.deviceHeld);
    this.stats.last = r;
    // the batch's mean loss: the micro-batches' means weighted by their shares, summed in f32 in order
    const loss = new Float32Array(1);
    r.losses.forEach((l, m) => (loss[0] = loss[0] + Math.fround(micro[m].loss_weight.data[0] * l)));
    const out: Record<string, HostTensor> = { loss: { dtype: 'f32', shape: [], data: loss }, grad_norm: r.gradNorm };
    return Object.fromEntries(download.map((d) => [d, out[d]]));
  }

  async getParams(names = this.paramNames): Promise<Record<string, HostTensor>> {
    const out: Record<string, HostTensor> = {};
    for (const n of names) {
      const at = this.where.get(n);
      if (at) out[n] = await this.getOne(at[0], n);
    }
    return out;
  }

  async setParams(p: Record<string, HostTensor>): Promise<void> {
    for (const [k, v] of Object.entries(p)) for (const s of this.where.get(k) ?? []) this.setOne(s, k, v);
  }

  abstract destroy(): void;
}

/** Stages simulated in the reference interpreter (the oracle for the device runner). */
export class PipelineInterpreterRunner extends PipelineRunnerBase {
  private readonly params: Record<string, HostTensor>[];

  constructor(prog: PipelineProgram, kind: PipelineScheduleKind, M: number, seed: number) {
    super(prog, kind, M);
    this.params = prog.devices.map((_, s) =>
      Object.fromEntries([...stageParams(prog, s)].map(([name, n]) => [name, initParam((n.attrs as AttrsOf<'param'>).init, n.type, name, seed)])),
    );
  }

  protected phase: PhaseRunner = async (s, ph, inputs, download) => {
    const g = this.prog.devices[s][ph]!;
    const out = interpret(g, { inputs, params: this.params[s] });
    for (const o of g.outputs) {
      const p = updatedParam(o);
      if (p !== undefined) this.params[s][p] = out[o.name];
    }
    return Object.fromEntries(download.map((d) => [d, out[d]]));
  };

  protected async getOne(s: number, name: string): Promise<HostTensor> {
    return this.params[s][name];
  }

  protected setOne(s: number, name: string, v: HostTensor): void {
    this.params[s][name] = v;
  }

  destroy(): void {}
}

/**
 * A stage's program as WebGPU runs it: a recv becomes the graph input of its channel's name, a send the output of
 * its operand under the send's name (the executor carries the value through the host).
 */
export function hostExchangeProgram(g: Graph): Graph {
  const b = new GraphBuilder();
  const map = new Map<number, number>();
  for (const n of g.nodes) {
    if (n.op === 'recv') {
      const a = n.attrs as AttrsOf<'recv'>;
      map.set(n.id, b.op('input', [], { name: recvChannel(a.from, a.tag), dtype: a.dtype, shape: [...a.shape] }));
    } else if (n.op === 'send') {
      const x = map.get(n.inputs[0])!;
      const leaf = ['param', 'input', 'constant'].includes(b.nodes[x].op);
      // an output must be computed by a kernel: a leaf sent as it is goes through a copy
      map.set(n.id, leaf ? b.add(x, b.full(0, b.type(x))) : x);
    } else map.set(n.id, b.op(n.op, n.inputs.map((i) => map.get(i)!), n.attrs as never, { ...(n.name !== undefined ? { name: n.name } : {}), ...(n.scope ? { scope: n.scope } : {}) }));
  }
  const outs: GraphOutput[] = g.outputs.map((o) => ({ ...o, id: map.get(o.id)! }));
  return b.build(g.name, outs);
}

/**
 * One WebGPU device per stage (per stage and replica with dp); a stage's programs share its parameter buffers. A
 * micro-batch's saved activations stay on the device: the forward writes them into buffers the backward reads
 * (`valueBuffer`), and between the two they wait in a stash slot (a device-side copy each way), one slot per
 * micro-batch in flight — M on every stage with GPipe, pp - s with 1F1B — so the schedules' memory differs here.
 */
export class PipelineDeviceRunner extends PipelineRunnerBase {
  private exes: Map<PhaseName, Executable>[] = [];
  private buffers: Map<string, GPUBuffer>[] = [];
  /** Per device: the buffers the forward writes its stash into and the backward reads it from. */
  private carry: Map<string, GPUBuffer>[] = [];
  /** Per device: stash slots not in use, and the slot of each micro-batch in flight. */
  private freeSlots: Map<string, GPUBuffer>[][] = [];
  private busySlots: Map<number, Map<string, GPUBuffer>>[] = [];
  private slotCount: number[] = [];

  private constructor(prog: PipelineProgram, kind: PipelineScheduleKind, M: number, readonly devices: KilnDevice[]) {
    super(prog, kind, M);
    if (devices.length !== prog.devices.length) throw new KilnError(`pp=${prog.pp}, dp=${prog.dp} needs ${prog.devices.length} devices, got ${devices.length}`);
  }

  static async create(prog: PipelineProgram, kind: PipelineScheduleKind, M: number, devices: KilnDevice[], seed: number): Promise<PipelineDeviceRunner> {
    const { compileGraph } = await import('../runtime/executable.js');
    const { BufferUsage } = await import('../runtime/pipelines.js');
    const r = new PipelineDeviceRunner(prog, kind, M, devices);
    const usage = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
    for (let s = 0; s < prog.devices.length; s++) {
      const dev = devices[s];
      const bufs = new Map<string, GPUBuffer>();
      const size = (bytes: number) => Math.max(4, Math.ceil(bytes / 4) * 4);
      const paramBuffer = (name: string, bytes: number) => {
        let b = bufs.get(name);
        if (!b) {
          b = dev.device.createBuffer({ label: `stage ${s} param ${name}`, size: size(bytes), usage });
          bufs.set(name, b);
        }
        return b;
      };
      const carry = new Map<string, GPUBuffer>();
      const fwdValue = (name: string, bytes: number) => {
        if (!name.startsWith('%')) return undefined;
        const b = dev.device.createBuffer({ label: `stage ${s} stash ${name}`, size: size(bytes), usage });
        carry.set(name, b);
        return b;
      };
      const exes = new Map<PhaseName, Executable>();
      for (const ph of PHASES) {
        const g = prog.devices[s][ph];
        if (!g) continue;
        // the forward goes first, so the backward finds the buffers of the stash values the forward wrote
        const valueBuffer = ph === 'fwd' ? fwdValue : ph === 'bwd' ? (name: string) => carry.get(name) : undefined;
        exes.set(ph, await compileGraph(hostExchangeProgram(g), dev, { seed, paramBuffer, ...(valueBuffer ? { valueBuffer } : {}) }));
      }
      r.exes.push(exes);
      r.buffers.push(bufs);
      r.carry.push(carry);
      r.freeSlots.push([]);
      r.busySlots.push(new Map());
      r.slotCount.push(0);
    }
    return r;
  }

  protected deviceHeld: DeviceHeld = (s) => new Set(this.carry[s].keys());

  private copy(s: number, from: Map<string, GPUBuffer>, to: Map<string, GPUBuffer>): void {
    const dev = this.devices[s].device;
    const enc = dev.createCommandEncoder();
    for (const [name, b] of from) enc.copyBufferToBuffer(b, 0, to.get(name)!, 0, b.size);
    dev.queue.submit([enc.finish()]);
  }

  protected phase: PhaseRunner = async (s, ph, inputs, download, mb) => {
    const carry = this.carry[s];
    if (ph === 'bwd' && carry.size) {
      const slot = this.busySlots[s].get(mb!)!;
      this.copy(s, slot, carry);
      this.busySlots[s].delete(mb!);
      this.freeSlots[s].push(slot);
    }
    const out = (await this.exes[s].get(ph)!.run(inputs, { download })).outputs;
    if (ph === 'fwd' && carry.size) {
      let slot = this.freeSlots[s].pop();
      if (!slot) {
        const dev = this.devices[s].device;
        slot = new Map([...carry].map(([name, b]) => [name, dev.createBuffer({ label: `stage ${s} stash slot ${this.slotCount[s]} ${name}`, size: b.size, usage: b.usage })]));
        this.slotCount[s]++;
      }
      this.copy(s, carry, slot);
      this.busySlots[s].set(mb!, slot);
    }
    return out;
  };

  private holder(s: number, name: string): Executable {
    const e = [...this.exes[s].values()].find((x) => x.paramNames.includes(name));
    if (!e) throw new KilnError(`stage ${s} has no parameter '${name}'`);
    return e;
  }

  protected getOne(s: number, name: string): Promise<HostTensor> {
    return this.holder(s, name).getParam(name);
  }

  protected setOne(s: number, name: string, v: HostTensor): void {
    this.holder(s, name).setParam(name, v);
  }

  /**
   * Per device: bytes of parameters, optimizer state and accumulators; of its stash slots (one per micro-batch it
   * has held in flight at once, so far) and their count; and of everything else its programs hold.
   */
  memory(): { paramBytes: number; stashBytes: number; stashSlots: number; otherBytes: number }[] {
    const sum = (m: Iterable<GPUBuffer>) => [...m].reduce((t, b) => t + b.size, 0);
    return this.exes.map((m, s) => {
      const slots = [...this.freeSlots[s], ...this.busySlots[s].values()];
      return {
        paramBytes: sum(this.buffers[s].values()),
        stashBytes: slots.reduce((t, x) => t + sum(x.values()), 0),
        stashSlots: this.slotCount[s],
        otherBytes: [...m.values()].reduce((t, e) => t + e.stats.deviceBytes, 0) + sum(this.carry[s].values()),
      };
    });
  }

  destroy(): void {
    for (const m of this.exes) for (const e of m.values()) e.destroy();
    for (const m of this.buffers) for (const b of m.values()) b.destroy();
    for (const m of this.carry) for (const b of m.values()) b.destroy();
    for (const [s, free] of this.freeSlots.entries()) for (const slot of [...free, ...this.busySlots[s].values()]) for (const b of slot.values()) b.destroy();
  }
}
