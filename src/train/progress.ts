/**
 * Progress of a training run: a cli-progress bar (step, loss, lr, tokens/s, ETA) on a terminal, one JSON line per
 * step with --json, plain periodic lines when stdout is not a terminal.
 */
import cliProgress from 'cli-progress';
import type { StepRecord } from './trainer.js';

export interface Progress {
  step(r: StepRecord): void;
  note(text: string): void;
  event(obj: Record<string, unknown>): void;
  stop(): void;
}

export function makeProgress(total: number, start: number, mode: 'json' | 'bar' | 'lines'): Progress {
  const tokS = (r: StepRecord) => Math.round((r.tokens * 1000) / Math.max(1e-6, r.ms));
  // f16 loss scaling: the scale in use and the steps skipped for overflow so far
  const scale = (r: StepRecord) => (r.lossScale === undefined ? '' : `  scale ${r.lossScale} (${r.overflows ?? 0} skipped)`);
  if (mode === 'json') {
    return {
      step: (r) => process.stdout.write(JSON.stringify({ type: 'step', ...r, tokensPerSec: tokS(r) }) + '\n'),
      note: () => {},
      event: (o) => process.stdout.write(JSON.stringify(o) + '\n'),
      stop: () => {},
    };
  }
  if (mode === 'lines') {
    const every = Math.max(1, Math.round(total / 20));
    return {
      step: (r) => {
        if (r.step % every === 0 || r.step === total || r.step === start + 1)
          process.stdout.write(`step ${r.step}/${total}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  ${tokS(r)} tok/s${scale(r)}\n`);
      },
      note: (t) => process.stdout.write(t + '\n'),
      event: () => {},
      stop: () => {},
    };
  }
  const bar = new cliProgress.SingleBar(
    { format: 'train |{bar}| {value}/{total} | loss {loss} | lr {lr} | {tps} tok/s{scale} | ETA {eta_formatted}', hideCursor: true, etaBuffer: 20 },
    cliProgress.Presets.shades_classic,
  );
  let last: Record<string, unknown> = { loss: '-', lr: '-', tps: '-', scale: '' };
  let lastStep = start;
  bar.start(total, start, last);
  return {
    step: (r) => {
      last = { loss: r.loss.toFixed(4), lr: r.lr.toExponential(2), tps: tokS(r), scale: scale(r).replace(/^ {2}/, ' | ') };
      lastStep = r.step;
      bar.update(r.step, last);
    },
    note: (t) => {
      bar.stop();
      process.stdout.write(t + '\n');
      bar.start(total, lastStep, last);
    },
    event: () => {},
    stop: () => bar.stop(),
  };
}
