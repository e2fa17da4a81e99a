/**
 * Pipeline schedules and the host side of a pipelined training step.
 *
 * A schedule is, per stage, the order of its micro-batch actions: F(m) (the stage's forward program on
 * micro-batch m) and B(m) (its backward program). GPipe runs every forward, then every backward; 1F1B runs
 * pp-1-s forwards to fill the pipeline, then alternates one forward and one backward, then drains. Both
 * accumulate gradients in micro-batch order 0..M-1, so they give the same bits; 1F1B holds at most pp-s
 * micro-batches' saved activations on stage s where GPipe holds M.
 *
 * `runPipelineStep` executes a schedule in ticks: in each tick every stage whose next action has all its
 * received values (the `recv` channels of its program) runs it, and the values it sends are delivered at the end
 * of the tick. A stage that cannot run (waiting, or done while others are not) idles for the tick: that is the
 * bubble, counted per device. With equal-time actions the counted bubble is the analytic one,
 * (pp-1)/(M+pp-1) of the step (tested); with a timed runner (WebGPU) the executor also measures each device's busy
 * time against the step's wall time. After the micro-batches, three per-step phases run on every stage at once:
 * `dpsync` (data-parallel replicas of the pipeline: each stage's accumulators to its other replicas), `tie` (stages that share a parameter — GPT's tied embedding — send their accumulated gradient of it to the other
 * holders), `norm` (each stage's partial squared gradient norm, sent to every stage) and `update` (the global
 * norm summed in stage order, clipping, the optimizer; accumulators zeroed).
 */
import { KilnError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import type { HostTensor } from '../ir/tensor.js';

export const PP_SCHEDULES = ['gpipe', '1f1b'] as const;
export type PipelineScheduleKind = (typeof PP_SCHEDULES)[number];

export interface Action {
  kind: 'F' | 'B';
  mb: number;
}

/** Per stage, the order of its micro-batch actions. */
export function pipelineSchedule(kind: PipelineScheduleKind, pp: number, M: number): Action[][] {
  if (!PP_SCHEDULES.includes(kind)) throw new KilnError(`--pp-schedule must be ${PP_SCHEDULES.join(' or ')}, got '${kind}'`);
  return Array.from({ length: pp }, (_, s) => {
    const F = (mb: number): Action => ({ kind: 'F', mb });
    const B = (mb: number): Action => ({ kind: 'B', mb });
    if (kind === 'gpipe') return [...Array.from({ length: M }, (_, m) => F(m)), ...Array.from({ length: M }, (_, m) => B(m))];
    const warm = Math.min(pp - 1 - s, M);
    const out: Action[] = Array.from({ length: warm }, (_, m) => F(m));
    for (let i = 0; i < M - warm; i++) out.push(F(warm + i), B(i));
    for (let m = M - warm; m < M; m++) out.push(B(m));
    return out;
  });
}

/** The analytic bubble of GPipe and 1F1B with equal-time actions: (pp-1)/(M+pp-1) of the step. */
export const bubbleFraction = (pp: number, M: number): number => (pp - 1) / (M + pp - 1);

export type PhaseName = 'fwd' | 'bwd' | 'dpsync' | 'tie' | 'norm' | 'update';

/** One stage's programs, as the pipeline pass made them (send/recv ops replaced by named inputs/outputs where run). */
export interface StagePrograms {
  fwd: Graph;
  bwd: Graph;
  /** Data-parallel replicas of the pipeline only: this stage's accumulators, sent to its other replicas. */
  dpsync: Graph | null;
  tie: Graph | null;
  norm: Graph;
  update: Graph;
  /** bwd inputs `%<id>` that are values the forward received (the host keeps them from the fwd run). */
  stashFromRecv: Map<string, string>;
}

/** Runs one phase program of one stage: inputs by name; returns the named outputs (updates stay with the stage). */
export type PhaseRunner = (stage: number, phase: PhaseName, inputs: Record<string, HostTensor>, download: string[], mb?: number) => Promise<Record<string, HostTensor>>;

/**
 * Per stage, the stash values (`%<id>` outputs of its forward) that the runner keeps on the device itself between a
 * micro-batch's forward and backward: the executor neither downloads nor feeds them.
 */
export type DeviceHeld = (stage: number) => ReadonlySet<string>;

export interface PipelineStepResult {
  /** Per micro-batch: the last stage's (unweighted) mean loss. */
  losses: number[];
  gradNorm: HostTensor;
  /** Ticks the micro-batch phase took, and per stage the ticks it idled in them. */
  ticks: number;
  idleTicks: number[];
  /**
   * Measured over the micro-batch phase: its wall-clock ms, and per stage the ms it ran programs and the ms it
   * waited (each tick lasts as long as its slowest action; a stage idles for the rest of it).
   */
  wallMs: number;
  busyMs: number[];
  idleMs: number[];
  /** Per stage: the most micro-batches whose saved activations it held at once, and their bytes. */
  stashPeak: number[];
  stashPeakBytes: number[];
}

const inputNames = (g: Graph) => g.nodes.filter((n) => n.op === 'input').map((n) => (n.attrs as AttrsOf<'input'>).name);
const recvs = (g: Graph) => g.nodes.filter((n) => n.op === 'recv').map((n) => n.attrs as AttrsOf<'recv'>);
const sends = (g: Graph) => g.outputs.filter((o) => g.nodes[o.id].op === 'send').map((o) => ({ name: o.name, to: (g.nodes[o.id].attrs as AttrsOf<'send'>).to, tag: (g.nodes[o.id].attrs as AttrsOf<'send'>).tag }));
const typeBytes = (t: { shape: readonly number[] }) => t.shape.reduce((a, b) => a * b, 1) * 4;

/** Bytes one micro-batch's stash holds on a stage: the forward's `%` outputs and the received values the backward reads. */
export function stashBytes(st: StagePrograms): number {
  const out = st.fwd.outputs.filter((o) => o.name.startsWith('%')).reduce((t, o) => t + typeBytes(st.fwd.nodes[o.id].type), 0);
  const recv = [...st.stashFromRecv.keys()].reduce((t, name) => t + typeBytes(st.bwd.nodes.find((n) => n.op === 'input' && (n.attrs as AttrsOf<'input'>).name === name)!.type), 0);
  return out + recv;
}

/**
 * One pipelined step: `micro[m]` are micro-batch m's inputs (with its `loss_weight`), `step` the per-step inputs
 * (lr, step). Programs are the pass's (with send/recv ops); `run` executes one phase of one stage.
 */
export async function runPipelineStep(
  stages: StagePrograms[],
  schedule: Action[][],
  micro: Record<string, HostTensor>[],
  step: Record<string, HostTensor>,
  run: PhaseRunner,
  deviceHeld: DeviceHeld = () => new Set(),
): Promise<PipelineStepResult> {
  const pp = stages.length;
  const mail = new Map<string, HostTensor>();
  const key = (from: number, to: number, tag: string, when: string) => `${from}>${to}:${tag}#${when}`;
  const stash = stages.map(() => new Map<number, Record<string, HostTensor>>());
  const stashPeak = new Array<number>(pp).fill(0);
  const stashPeakBytes = new Array<number>(pp).fill(0);
  const busyMs = new Array<number>(pp).fill(0);
  const idleMs = new Array<number>(pp).fill(0);
  const losses: number[] = new Array(micro.length).fill(NaN);

  const feed = (s: number, g: Graph, base: Record<string, HostTensor>, when: string, extra: Record<string, HostTensor> = {}) => {
    const inputs: Record<string, HostTensor> = {};
    for (const n of g.nodes) {
      if (n.op === 'recv') {
        const a = n.attrs as AttrsOf<'recv'>;
        const v = mail.get(key(a.from, s, a.tag, when));
        if (!v) throw new KilnError(`internal error: stage ${s} runs before its recv ${a.tag} from stage ${a.from} (${when})`);
        inputs[`recv:${a.from}:${a.tag}`] = v;
      }
    }
    const held = deviceHeld(s);
    for (const name of inputNames(g)) {
      if (held.has(name)) continue;
      const v = extra[name] ?? base[name];
      if (!v) throw new KilnError(`stage ${s}: missing input '${name}'`);
      inputs[name] = v;
    }
    return inputs;
  };
  const ready = (s: number, g: Graph, when: string) => recvs(g).every((a) => mail.has(key(a.from, s, a.tag, when)));
  const post = (s: number, g: Graph, out: Record<string, HostTensor>, when: string) => {
    for (const x of sends(g)) mail.set(key(s, x.to, x.tag, when), out[x.name]);
  };
  let took: number[] = [];
  const timed = async (s: number, f: () => Promise<Record<string, HostTensor>>) => {
    const t0 = performance.now();
    const r = await f();
    took[s] = performance.now() - t0;
    return r;
  };

  const pc = new Array<number>(pp).fill(0);
  const idleTicks = new Array<number>(pp).fill(0);
  let ticks = 0;
  const t0 = performance.now();
  while (pc.some((p, s) => p < schedule[s].length)) {
    const todo: { s: number; a: Action }[] = [];
    for (let s = 0; s < pp; s++) {
      const a = schedule[s][pc[s]];
      if (a && ready(s, a.kind === 'F' ? stages[s].fwd : stages[s].bwd, `mb${a.mb}`)) todo.push({ s, a });
      else idleTicks[s]++;
    }
    if (!todo.length) throw new KilnError(`pipeline schedule deadlocked at tick ${ticks} (stage positions ${pc.join(', ')})`);
    took = new Array<number>(pp).fill(0);
    const tick0 = performance.now();
    const outs = await Promise.all(
      todo.map(({ s, a }) => {
        const when = `mb${a.mb}`;
        const st = stages[s];
        if (a.kind === 'F') {
          const inputs = feed(s, st.fwd, micro[a.mb], when);
          const held = deviceHeld(s);
          const download = st.fwd.outputs.map((o) => o.name).filter((n) => !held.has(n));
          return timed(s, () => run(s, 'fwd', inputs, download, a.mb)).then((out) => {
            // what the backward reads: the forward's `%` outputs and the values it received
            const kept: Record<string, HostTensor> = {};
            for (const o of st.fwd.outputs) if (o.name.startsWith('%') && !held.has(o.name)) kept[o.name] = out[o.name];
            for (const [name, ch] of st.stashFromRecv) kept[name] = inputs[ch];
            stash[s].set(a.mb, kept);
            stashPeak[s] = Math.max(stashPeak[s], stash[s].size);
            stashPeakBytes[s] = Math.max(stashPeakBytes[s], stash[s].size * stashBytes(st));
            if (out.loss) losses[a.mb] = out.loss.data[0];
            return out;
          });
        }
        const kept = stash[s].get(a.mb);
        if (!kept) throw new KilnError(`internal error: stage ${s} runs B(${a.mb}) before F(${a.mb})`);
        const inputs = feed(s, st.bwd, micro[a.mb], when, kept);
        return timed(s, () => run(s, 'bwd', inputs, sends(st.bwd).map((x) => x.name), a.mb)).then((out) => {
          stash[s].delete(a.mb);
          return out;
        });
      }),
    );
    const tickMs = performance.now() - tick0;
    for (let s = 0; s < pp; s++) {
      busyMs[s] += took[s];
      idleMs[s] += tickMs - took[s];
    }
    todo.forEach(({ s, a }, i) => {
      post(s, a.kind === 'F' ? stages[s].fwd : stages[s].bwd, outs[i], `mb${a.mb}`);
      pc[s]++;
    });
    ticks++;
  }
  const wallMs = performance.now() - t0;

  // per-step phases: every stage at once, each phase's sends delivered before the next phase
  let gradNorm: HostTensor | undefined;
  for (const phase of ['dpsync', 'tie', 'norm', 'update'] as const) {
    const outs = await Promise.all(
      stages.map(async (st, s) => {
        const g = st[phase];
        if (!g) return null;
        if (!ready(s, g, 'step')) throw new KilnError(`internal error: stage ${s}'s ${phase} program is missing a received value`);
        const download = g.outputs.filter((o) => o.role?.kind !== 'update').map((o) => o.name);
        return timed(s, () => run(s, phase, feed(s, g, step, 'step'), download));
      }),
    );
    outs.forEach((out, s) => {
      const g = stages[s][phase];
      if (out && g) post(s, g, out, 'step');
      if (phase === 'update' && s === 0) gradNorm = out!.grad_norm;
    });
  }
  return { losses, gradNorm: gradNorm!, ticks, idleTicks, wallMs, busyMs, idleMs, stashPeak, stashPeakBytes };
}
