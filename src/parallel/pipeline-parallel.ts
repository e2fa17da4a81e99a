/**
 * Pipeline parallelism as a compiler pass: the forward graph of a model's loss (at the micro-batch size) is split
 * into `pp` stages at the boundaries of its repeated blocks (the parameters `h.<i>.*` of the library GPT's
 * `for i in range(layers) { ... as h[i] }`), and every stage gets its own programs with `send`/`recv`
 * (src/ir/ops/p2p.ts) where a value crosses a stage boundary:
 *
 *   fwd    one micro-batch forward: recv the activations it reads, send the ones later stages read; the last
 *          stage outputs the micro-batch's loss. Values its backward reads leave as outputs `%<id>` (the stash).
 *   bwd    one micro-batch backward: recv the cotangents of what it sent, send the cotangents of what it
 *          received, accumulate its parameters' gradients into `acc.<p>`.
 *   tie    per step, stages that hold the same parameter (GPT's tied embedding, read by the embedding on the
 *          first stage and the head on the last) send their accumulated gradient of it to the other holders;
 *   norm   per step, each stage's partial squared gradient norm, sent to every other stage;
 *   update per step, the global norm (summed in stage order: the same bits everywhere), clipping, the optimizer
 *          on this stage's parameters, accumulators zeroed.
 *   dpsync per step, with `dp` data-parallel replicas of the whole pipeline (device r*pp + s runs stage s of
 *          replica r): the stage's accumulators, sent to every replica of the stage; tie/norm/update read their
 *          sum in replica order.
 *
 * Placement: a block's parameters are pinned to its stage (blocks split into contiguous, near-equal runs); any
 * other op runs on the latest stage among its operands. Ops that depend on no pinned value (the embedding lookup,
 * the causal mask, parameters outside blocks) are "free": copied into every stage that reads them, so nothing
 * crosses a boundary but the residual stream. A free parameter read by several stages (the tied embedding) is
 * held by each, updated identically from the summed gradient.
 *
 * Each stage's forward is differentiated on its own: its objective is sum(y * dy) over the values y it sends
 * (dy: the cotangents received back, as inputs) plus, on the last stage, loss_weight * loss. The gradient of
 * that objective with respect to the stage's inputs is what it sends back, exactly, so chaining the stages is
 * the chain rule of the whole model. Then the joint graph is split into the forward (ancestors of what is sent
 * and of the loss) and the backward (the rest).
 */
import { KilnError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, GraphOutput, Node } from '../ir/graph.js';
import { updateOutput } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import { sendChannel, recvChannel } from '../ir/ops/p2p.js';
import { fmtType, isFloat } from '../ir/types.js';
import { compileIR } from '../passes/pipeline.js';
import { registerPass } from '../passes/registry.js';
import { printGraph } from '../ir/print.js';
import { describePipelineProgram } from './pipeline-describe.js';
import { dce } from '../passes/dce.js';
import { buildTrainStep, type OptimizerConfig } from '../train/optimizers.js';
import type { StagePrograms } from './pipeline-schedule.js';

export interface PipelineOptions {
  pp: number;
  /** Data-parallel replicas of the whole pipeline (default 1): device r*pp + s runs stage s of replica r. */
  dp?: number;
  optimizer: OptimizerConfig;
  /** Parameters to train (default: every float parameter). */
  wrt?: string[];
}

export interface PipelineProgram {
  pp: number;
  dp: number;
  /** Per device (r*pp + s: stage s of data-parallel replica r), its programs; send/recv name devices. */
  devices: StagePrograms[];
  /** Blocks per stage, e.g. [[0, 1], [2, 3]]. */
  blocks: number[][];
  /** Every trainable parameter and the stages that hold it (more than one: a shared parameter). */
  holders: Map<string, number[]>;
}

const FREE = -1;
const BLOCK = /^([A-Za-z_]\w*)\.(\d+)\./;
const isLeaf = (n: Node) => n.op === 'input' || n.op === 'param' || n.op === 'constant' || n.op === 'iota';
const pname = (n: Node) => (n.attrs as AttrsOf<'param'>).name;

/** The repeated blocks of a model: the parameter prefix `<name>.<i>.` with the most indices. */
export function findBlocks(g: Graph): { prefix: string; count: number } | null {
  const idx = new Map<string, Set<number>>();
  for (const n of g.nodes) {
    if (n.op !== 'param') continue;
    const m = BLOCK.exec(pname(n));
    if (m) idx.set(m[1], (idx.get(m[1]) ?? new Set()).add(Number(m[2])));
  }
  let best: { prefix: string; count: number } | null = null;
  for (const [prefix, s] of idx) if (!best || s.size > best.count) best = { prefix, count: s.size };
  return best;
}

/** Stage of each of L blocks: contiguous runs, the earlier stages taking one more where L does not divide. */
export const stageOfBlock = (i: number, L: number, pp: number): number => Math.floor((i * pp) / L);

function ancestors(g: Graph, roots: number[]): Set<number> {
  const seen = new Set<number>();
  const stack = [...roots];
  while (stack.length) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    stack.push(...g.nodes[id].inputs);
  }
  return seen;
}

const copyOpts = (n: Node) => ({ ...(n.name !== undefined ? { name: n.name } : {}), ...(n.scope ? { scope: n.scope } : {}), ...(n.loc ? { loc: n.loc } : {}) });
const sumAll = (b: GraphBuilder, x: number) => b.sum(x, b.type(x).shape.map((_, i) => i));
const chain = (b: GraphBuilder, ids: number[]) => ids.reduce((a, x) => b.add(a, x));

/** Splits the forward graph `forward` (with a scalar `loss` output, at the micro-batch size) into pipeline stages. */
export function partitionPipeline(forward: Graph, o: PipelineOptions): PipelineProgram {
  const { pp } = o;
  if (o.optimizer.skipNonFinite) throw new KilnError('--on-nonfinite skip is not supported with pipeline parallelism (each stage updates its own parameters); use the default stop');
  const lossOut = forward.outputs.find((x) => x.name === 'loss');
  if (!lossOut) throw new KilnError(`pipeline parallelism splits a loss: ${forward.name} has no 'loss' output`);
  const blocks = findBlocks(forward);
  if (!blocks || blocks.count < pp) {
    throw new KilnError(`pp=${pp}: the model has ${blocks ? `${blocks.count} repeated block(s) ('${blocks.prefix}.<i>.*')` : 'no repeated blocks (parameters named <name>.<i>.*)'}; pipeline stages split at blocks, so it needs at least ${pp}`);
  }
  const L = blocks.count;
  const g = forward;

  // placement
  const st = new Array<number>(g.nodes.length).fill(FREE);
  for (const n of g.nodes) {
    if (n.op === 'param') {
      const m = BLOCK.exec(pname(n));
      if (m && m[1] === blocks.prefix) st[n.id] = stageOfBlock(Number(m[2]), L, pp);
    } else if (!isLeaf(n)) st[n.id] = Math.max(FREE, ...n.inputs.map((i) => st[i]));
  }
  if (st[lossOut.id] !== pp - 1) throw new KilnError(`internal error: the loss is placed on stage ${st[lossOut.id]}, not the last`);
  const consumers: Set<number>[] = g.nodes.map(() => new Set());
  for (const n of g.nodes) for (const i of n.inputs) if (st[n.id] > st[i] && st[i] !== FREE) consumers[i].add(st[n.id]);

  const trainable = (name: string, type: Node['type']) => isFloat(type.dtype) && (o.wrt ? o.wrt.includes(name) : true);
  const holders = new Map<string, number[]>();
  const stageParams: string[][] = [];
  const joints: Graph[] = [];
  const producer = (i: number) => st[i];

  for (let s = 0; s < pp; s++) {
    const b = new GraphBuilder();
    const map = new Map<number, number>();
    const get = (i: number): number => {
      const have = map.get(i);
      if (have !== undefined) return have;
      const n = g.nodes[i];
      let id: number;
      if (st[i] === FREE || st[i] === s) id = b.op(n.op, n.inputs.map(get), n.attrs as never, copyOpts(n));
      else if (st[i] < s) {
        if (!isFloat(n.type.dtype)) throw new KilnError(`pp=${pp}: stage ${s} reads %${i} (${fmtType(n.type)}) from stage ${st[i]}: only float activations cross pipeline stages`);
        id = b.op('input', [], { name: `pp.x.${i}`, dtype: n.type.dtype, shape: [...n.type.shape] });
      } else throw new KilnError(`internal error: stage ${s} reads %${i} of a later stage`);
      map.set(i, id);
      return id;
    };
    for (const n of g.nodes) if (st[n.id] === s) get(n.id);
    const outputs: GraphOutput[] = [];
    const terms: number[] = [];
    for (const n of g.nodes) {
      if (st[n.id] !== s || !consumers[n.id].size) continue;
      const y = get(n.id);
      const dy = chain(b, [...consumers[n.id]].sort((x, z) => x - z).map((c) => b.op('input', [], { name: `pp.g.${n.id}.${c}`, dtype: n.type.dtype, shape: [...n.type.shape] })));
      terms.push(sumAll(b, b.mul(y, dy)));
      outputs.push({ name: `pp.y.${n.id}`, id: y });
    }
    if (s === pp - 1) {
      const loss = get(lossOut.id);
      terms.push(b.mul(b.op('input', [], { name: 'loss_weight', dtype: 'f32', shape: [] }), loss));
      outputs.push({ name: 'loss', id: loss });
    }
    const objective = chain(b, terms);
    const S = b.build(`${g.name}.stage${s}`, [{ name: 'pp.objective', id: objective }, ...outputs]);
    const params = S.nodes.filter((n) => n.op === 'param' && trainable(pname(n), n.type)).map(pname);
    stageParams.push(params);
    for (const p of params) holders.set(p, [...(holders.get(p) ?? []), s]);
    const wrtInputs = S.nodes.filter((n) => n.op === 'input' && (n.attrs as AttrsOf<'input'>).name.startsWith('pp.x.')).map((n) => (n.attrs as AttrsOf<'input'>).name);
    joints.push(compileIR(S, { grad: { loss: 'pp.objective', wrt: params, wrtInputs } }));
  }

  const dp = o.dp ?? 1;
  const split = joints.map((J, s) => splitStage(J, s, consumers, producer));
  const devices: StagePrograms[] = [];
  for (let r = 0; r < dp; r++) {
    joints.forEach((J, s) => {
      const off = r * pp;
      const stashFromRecv = new Map([...split[s].stashFromRecv].map(([k, ch]) => [k, offsetChannel(ch, off)]));
      devices.push({ fwd: offsetP2P(split[s].fwd, off), bwd: offsetP2P(split[s].bwd, off), stashFromRecv, ...stepPrograms(s, r, pp, dp, stageParams[s], holders, J, o.optimizer) });
    });
  }
  const blocksOf = Array.from({ length: pp }, (_, s) => Array.from({ length: L }, (_, i) => i).filter((i) => stageOfBlock(i, L, pp) === s));
  return { pp, dp, devices, blocks: blocksOf, holders };
}

/** Replica r's copy of a stage program: every send/recv names devices r*pp + stage. */
function offsetP2P(g: Graph, off: number): Graph {
  if (!off) return g;
  return {
    ...g,
    nodes: g.nodes.map((n) =>
      n.op === 'send' ? { ...n, attrs: { ...(n.attrs as AttrsOf<'send'>), to: (n.attrs as AttrsOf<'send'>).to + off } } : n.op === 'recv' ? { ...n, attrs: { ...(n.attrs as AttrsOf<'recv'>), from: (n.attrs as AttrsOf<'recv'>).from + off } } : n,
    ),
    outputs: g.outputs.map((o) => {
      const n = g.nodes[o.id];
      return n.op === 'send' ? { ...o, name: sendChannel((n.attrs as AttrsOf<'send'>).to + off, (n.attrs as AttrsOf<'send'>).tag) } : o;
    }),
  };
}

const offsetChannel = (ch: string, off: number) => {
  const [, kind, dev, tag] = /^(recv|send):(\d+):(.*)$/.exec(ch)!;
  return `${kind}:${Number(dev) + off}:${tag}`;
};

/** The stage's joint graph as a forward and a backward program, with send/recv at its boundaries. */
function splitStage(J: Graph, s: number, consumers: Set<number>[], producer: (i: number) => number): Pick<StagePrograms, 'fwd' | 'bwd' | 'stashFromRecv'> {
  const out = (name: string) => J.outputs.find((x) => x.name === name);
  const ys = J.outputs.filter((x) => x.name.startsWith('pp.y.'));
  const loss = out('loss');
  const fwdSet = ancestors(J, [...ys.map((y) => y.id), ...(loss ? [loss.id] : [])]);
  const grads = J.outputs.filter((x) => x.role?.kind === 'grad');
  const inGrads = J.outputs.filter((x) => x.role?.kind === 'input-grad');
  const bwdSet = ancestors(J, [...grads, ...inGrads].map((x) => x.id));
  const inFwd = (i: number) => fwdSet.has(i) && !isLeaf(J.nodes[i]);
  const inName = (n: Node) => (n.attrs as AttrsOf<'input'>).name;
  const boundary = (name: string) => Number(/^pp\.x\.(\d+)$/.exec(name)![1]);

  // forward
  const stashed = new Set<number>();
  for (const id of bwdSet) {
    const n = J.nodes[id];
    if (!inFwd(id) && !isLeaf(n)) for (const i of n.inputs) if (inFwd(i)) stashed.add(i);
  }
  for (const x of [...grads, ...inGrads]) if (inFwd(x.id)) stashed.add(x.id);
  const fb = new GraphBuilder();
  const fmap = new Map<number, number>();
  const fget = (i: number): number => {
    const have = fmap.get(i);
    if (have !== undefined) return have;
    const n = J.nodes[i];
    let id: number;
    if (n.op === 'input' && inName(n).startsWith('pp.x.')) {
      const x = boundary(inName(n));
      id = fb.op('recv', [], { from: producer(x), tag: `act.${x}`, dtype: n.type.dtype, shape: [...n.type.shape] });
    } else id = fb.op(n.op, n.inputs.map(fget), n.attrs as never, copyOpts(n));
    fmap.set(i, id);
    return id;
  };
  const fouts: GraphOutput[] = [];
  for (const y of ys) {
    const x = Number(y.name.slice('pp.y.'.length));
    for (const c of [...consumers[x]].sort((a, b) => a - b)) {
      const tag = `act.${x}`;
      fouts.push({ name: sendChannel(c, tag), id: fb.op('send', [fget(y.id)], { to: c, tag }) });
    }
  }
  if (loss) fouts.push({ name: 'loss', id: fget(loss.id), role: { kind: 'loss' } });
  for (const i of [...stashed].sort((a, b) => a - b)) fouts.push({ name: `%${i}`, id: fget(i) });
  const fwd = fb.build(`${J.name}.fwd`, fouts);

  // backward
  const bb = new GraphBuilder();
  const bmap = new Map<number, number>();
  const stashFromRecv = new Map<string, string>();
  const bget = (i: number): number => {
    const have = bmap.get(i);
    if (have !== undefined) return have;
    const n = J.nodes[i];
    let id: number;
    if (inFwd(i)) id = bb.op('input', [], { name: `%${i}`, dtype: n.type.dtype, shape: [...n.type.shape] });
    else if (n.op === 'input' && inName(n).startsWith('pp.x.')) {
      const x = boundary(inName(n));
      stashFromRecv.set(`%${i}`, recvChannel(producer(x), `act.${x}`));
      id = bb.op('input', [], { name: `%${i}`, dtype: n.type.dtype, shape: [...n.type.shape] });
    } else if (n.op === 'input' && inName(n).startsWith('pp.g.')) {
      const [, x, c] = /^pp\.g\.(\d+)\.(\d+)$/.exec(inName(n))!;
      id = bb.op('recv', [], { from: Number(c), tag: `grad.${x}`, dtype: n.type.dtype, shape: [...n.type.shape] });
    } else id = bb.op(n.op, n.inputs.map(bget), n.attrs as never, copyOpts(n));
    bmap.set(i, id);
    return id;
  };
  const bouts: GraphOutput[] = [];
  for (const gOut of grads) {
    const p = (gOut.role as { param: string }).param;
    const pn = J.nodes.find((n) => n.op === 'param' && pname(n) === p)!;
    const acc = bb.op('param', [], { name: `acc.${p}`, dtype: pn.type.dtype, shape: [...pn.type.shape], init: { kind: 'zeros' } });
    bouts.push(updateOutput(`acc.${p}`, bb.add(acc, bget(gOut.id))));
  }
  for (const gOut of inGrads) {
    const x = boundary((gOut.role as { input: string }).input);
    const tag = `grad.${x}`;
    bouts.push({ name: sendChannel(producer(x), tag), id: bb.op('send', [bget(gOut.id)], { to: producer(x), tag }) });
  }
  const bwd = bb.build(`${J.name}.bwd`, bouts);
  return { fwd, bwd, stashFromRecv };
}

/** The per-step programs of stage s: tie, norm, update (see the file comment). */
function stepPrograms(s: number, r: number, pp: number, dp: number, params: string[], holders: Map<string, number[]>, J: Graph, cfg: OptimizerConfig): Pick<StagePrograms, 'dpsync' | 'tie' | 'norm' | 'update'> {
  const dev = (stage: number, replica = r) => replica * pp + stage;
  const types = new Map(J.nodes.filter((n) => n.op === 'param').map((n) => [pname(n), n.type]));
  const inits = new Map(J.nodes.filter((n) => n.op === 'param').map((n) => [pname(n), (n.attrs as AttrsOf<'param'>).init]));
  const shared = params.filter((p) => holders.get(p)!.length > 1);
  const accOf = (b: GraphBuilder, p: string) => b.op('param', [], { name: `acc.${p}`, dtype: types.get(p)!.dtype, shape: [...types.get(p)!.shape], init: { kind: 'zeros' } });

  const name = dp > 1 ? `replica${r}.stage${s}` : `stage${s}`;
  const recvOf = (b: GraphBuilder, p: string, from: number, tag: string) => b.op('recv', [], { from, tag, dtype: types.get(p)!.dtype, shape: [...types.get(p)!.shape] });
  // Sums of copies must come out as the same bits on every device that makes them. A GPU compiler may reassociate
  // a fused chain of adds (Mesa's NIR does), so every device sums the same shape: a chain of received values in
  // device order, its own contribution included (sent to itself through the host), never a local value plus
  // received ones.
  // Data-parallel replicas: each replica of this stage sends its accumulators to every replica.
  let dpsync: Graph | null = null;
  if (dp > 1) {
    const b = new GraphBuilder();
    const outs: GraphOutput[] = [];
    for (const p of params) {
      const acc = accOf(b, p);
      for (let q = 0; q < dp; q++) outs.push({ name: sendChannel(dev(s, q), `dp.${p}`), id: b.op('send', [acc], { to: dev(s, q), tag: `dp.${p}` }) });
    }
    dpsync = b.build(`${name}.dpsync`, outs);
  }
  const replicaSum = (b: GraphBuilder, p: string) => (dp > 1 ? chain(b, Array.from({ length: dp }, (_, q) => recvOf(b, p, dev(s, q), `dp.${p}`))) : accOf(b, p));

  // Shared parameters: each holder sends its (replica-summed) gradient to every holder.
  let tie: Graph | null = null;
  if (shared.length) {
    const b = new GraphBuilder();
    const outs: GraphOutput[] = [];
    for (const p of shared) {
      const acc = replicaSum(b, p);
      for (const h of holders.get(p)!) outs.push({ name: sendChannel(dev(h), `tie.${p}`), id: b.op('send', [acc], { to: dev(h), tag: `tie.${p}` }) });
    }
    tie = b.build(`${name}.tie`, outs);
  }
  const fullGrads = (b: GraphBuilder) =>
    new Map(params.map((p) => [p, holders.get(p)!.length > 1 ? chain(b, holders.get(p)!.map((h) => recvOf(b, p, dev(h), `tie.${p}`))) : replicaSum(b, p)] as const));
  const partial = (b: GraphBuilder, g: Map<string, number>) => {
    const counted = params.filter((p) => holders.get(p)![0] === s).map((p) => sumAll(b, b.mul(g.get(p)!, g.get(p)!)));
    return counted.length ? chain(b, counted) : b.scalar(0);
  };

  const nb = new GraphBuilder();
  const sq = partial(nb, fullGrads(nb));
  const nouts: GraphOutput[] = [];
  for (let t = 0; t < pp; t++) nouts.push({ name: sendChannel(dev(t), 'sq'), id: nb.op('send', [sq], { to: dev(t), tag: 'sq' }) });
  const norm = nb.build(`${name}.norm`, nouts);

  const ub = new GraphBuilder();
  const grads = fullGrads(ub);
  const total = chain(ub, Array.from({ length: pp }, (_, t) => ub.op('recv', [], { from: dev(t), tag: 'sq', dtype: 'f32', shape: [] })));
  const gnorm = ub.unary('sqrt', total);
  const clip = cfg.clip ?? 1.0;
  const scale = clip ? ub.binary('min', ub.scalar(1), ub.div(ub.scalar(clip), ub.add(gnorm, ub.scalar(1e-6)))) : null;
  const jointOuts: GraphOutput[] = [{ name: 'loss', id: gnorm, role: { kind: 'loss' } }];
  for (const p of params) {
    ub.op('param', [], { name: p, dtype: types.get(p)!.dtype, shape: [...types.get(p)!.shape], init: inits.get(p)! });
    const gp = grads.get(p)!;
    jointOuts.push({ name: `grad:${p}`, id: scale === null ? gp : ub.mul(gp, scale), role: { kind: 'grad', param: p } });
  }
  // clipping is done above with the global norm: the optimizer itself must not clip again
  const step = buildTrainStep(ub.build(name, jointOuts), { ...cfg, clip: 0 });
  const eb = GraphBuilder.extend(step);
  const zeros = params.map((p) => {
    // the accumulator it zeroes must be a node (with dp > 1 it is read only through the exchanges)
    if (!eb.nodes.some((n) => n.op === 'param' && pname(n) === `acc.${p}`)) accOf(eb, p);
    return updateOutput(`acc.${p}`, eb.full(0, types.get(p)!));
  });
  const update = dce(eb.build(`${name}.update`, [{ name: 'grad_norm', id: gnorm, role: { kind: 'metric' } }, ...step.outputs.filter((x) => x.role?.kind === 'update'), ...zeros]));
  return { dpsync, tie, norm, update };
}

declare module '../passes/registry.js' {
  interface PassOptionsMap {
    pipeline: { pp: number; dp: number; optimizer: OptimizerConfig; wrt: string[] | null };
  }
  interface CompileState {
    /** The stage programs of a pipeline-parallel training step (the `pipeline` pass); `graph` stays the one-device step. */
    pipeline?: PipelineProgram;
  }
}

registerPass(
  {
    name: 'pipeline',
    summary: 'pipeline parallel: splits the forward graph at its repeated blocks into pp stages, each differentiated on its own, with send/recv of activations and their gradients; per-step tie/norm/update programs (the graph itself stays the one-device step)',
    level: 'graph',
    options: {
      pp: 'pipeline stages (one device each)',
      dp: 'data-parallel replicas of the whole pipeline (dp x pp devices; accumulated gradients summed over replicas each step)',
      optimizer: 'the optimizer of the per-step update programs',
      wrt: 'parameters to train (null: every float parameter)',
    },
    guarantees: ['every stage holds at least one block; only float activations cross stages; sends and recvs pair up by (from, to, tag)'],
    configure: (req) => ((req.parallel?.pp ?? 1) > 1 && req.train ? { pp: req.parallel!.pp!, dp: req.parallel!.dp, optimizer: req.train.optimizer, wrt: req.grad?.wrt ?? null } : null),
    run: (s, o) => ({ ...s, pipeline: partitionPipeline(s.graph, { pp: o.pp, dp: o.dp, optimizer: o.optimizer, ...(o.wrt ? { wrt: o.wrt } : {}) }) }),
    check: (s) => {
      const p = s.pipeline;
      if (!p) return 'no pipeline program';
      const ends = (op: 'send' | 'recv') =>
        p.devices
          .flatMap((st, k) => [st.fwd, st.bwd, st.dpsync, st.tie, st.norm, st.update].flatMap((g) => (g?.nodes ?? []).filter((n) => n.op === op).map((n) => (op === 'send' ? `${k}>${(n.attrs as AttrsOf<'send'>).to}:${(n.attrs as AttrsOf<'send'>).tag}` : `${(n.attrs as AttrsOf<'recv'>).from}>${k}:${(n.attrs as AttrsOf<'recv'>).tag}`))))
          .sort()
          .join(' ');
      // a norm/update pair receives the same tied gradient twice (both recompute it): compare the sets
      const uniq = (x: string) => [...new Set(x.split(' '))].join(' ');
      return uniq(ends('send')) === uniq(ends('recv')) ? null : `unpaired send/recv: sends ${uniq(ends('send'))}; recvs ${uniq(ends('recv'))}`;
    },
    show: (s) => (s.pipeline ? describePipelineProgram(s.pipeline, s.pipeline.pp, (g) => ({ text: printGraph(g) })) : printGraph(s.graph)),
  },
  { before: 'autodiff' },
);
