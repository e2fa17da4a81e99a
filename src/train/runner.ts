/**
 * Where a compiled training graph runs: on the WebGPU device (the real thing) or in the reference interpreter
 * (tests, and a check of the device). Both keep parameters and optimizer state between runs and apply the graph's
 * `update:<name>` outputs after each run, so the trainer drives them the same way.
 */
import { interpret } from '../interp/interpreter.js';
import type { Graph } from '../ir/graph.js';
import { initParam } from '../ir/init.js';
import type { AttrsOf } from '../ir/op.js';
import type { HostTensor } from '../ir/tensor.js';
import type { KilnDevice } from '../runtime/device.js';
import type { Executable } from '../runtime/executable.js';
import { updatedParam } from '../ir/graph.js';

export interface StepRunner {
  readonly paramNames: string[];
  run(inputs: Record<string, HostTensor>, download: string[]): Promise<Record<string, HostTensor>>;
  getParams(names?: string[]): Promise<Record<string, HostTensor>>;
  setParams(p: Record<string, HostTensor>): Promise<void>;
  destroy(): void;
}

const paramNodes = (g: Graph) => g.nodes.filter((n) => n.op === 'param').map((n) => ({ node: n, attrs: n.attrs as AttrsOf<'param'> }));

export class InterpreterRunner implements StepRunner {
  private params: Record<string, HostTensor> = {};
  readonly paramNames: string[];

  constructor(
    private readonly graph: Graph,
    seed: number,
  ) {
    for (const { node, attrs } of paramNodes(graph)) this.params[attrs.name] = initParam(attrs.init, node.type, attrs.name, seed);
    this.paramNames = Object.keys(this.params);
  }

  async run(inputs: Record<string, HostTensor>, download: string[]): Promise<Record<string, HostTensor>> {
    const out = interpret(this.graph, { inputs, params: this.params });
    for (const o of this.graph.outputs) {
      const p = updatedParam(o);
      if (p !== undefined) this.params[p] = out[o.name];
    }
    return Object.fromEntries(download.map((d) => [d, out[d]]));
  }

  async getParams(names = this.paramNames): Promise<Record<string, HostTensor>> {
    return Object.fromEntries(names.map((n) => [n, this.params[n]]));
  }

  async setParams(p: Record<string, HostTensor>): Promise<void> {
    for (const [k, v] of Object.entries(p)) if (k in this.params) this.params[k] = v;
  }

  destroy(): void {}
}

export class DeviceRunner implements StepRunner {
  readonly paramNames: string[];

  private constructor(private readonly exe: Executable) {
    this.paramNames = exe.paramNames;
  }

  static async create(graph: Graph, dev: KilnDevice, seed: number): Promise<DeviceRunner> {
    const { compileGraph } = await import('../runtime/executable.js');
    return new DeviceRunner(await compileGraph(graph, dev, { seed }));
  }

  get stats() {
    return this.exe.stats;
  }

  async run(inputs: Record<string, HostTensor>, download: string[]): Promise<Record<string, HostTensor>> {
    const present = Object.fromEntries(Object.entries(inputs).filter(([k]) => this.exe.inputNames.includes(k)));
    return (await this.exe.run(present, { download })).outputs;
  }

  async getParams(names = this.paramNames): Promise<Record<string, HostTensor>> {
    const out: Record<string, HostTensor> = {};
    for (const n of names) out[n] = await this.exe.getParam(n);
    return out;
  }

  async setParams(p: Record<string, HostTensor>): Promise<void> {
    for (const [k, v] of Object.entries(p)) if (this.paramNames.includes(k)) this.exe.setParam(k, v);
  }

  destroy(): void {
    this.exe.destroy();
  }
}
