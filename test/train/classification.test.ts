// Sequence classification: labelled lines packed one example per window, the batches exactly as specified, and a
// GPT trained with `--objective cls` reaching a high accuracy on a separable synthetic set (eval reports accuracy).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Batcher, loadLabelled } from '../../src/train/data.js';
import { clsBatch } from '../../src/train/objectives.js';
import { makeTokenizer } from '../../src/train/tokenizers.js';

const dir = mkdtempSync(join(tmpdir(), 'kiln-cls-'));

describe('classification data', () => {
  it('label<TAB>text lines become one window each: label index, T - 1 tokens padded, lengths of the real tokens', async () => {
    const tok = await makeTokenizer('bytes');
    const file = join(dir, 'tiny.txt');
    writeFileSync(file, 'b\thi\na\tlonger text here\nb\tx\n');
    const d = loadLabelled(file, tok, 6);
    expect(d.classes).toEqual(['a', 'b']);
    const b = new Batcher(d.train, 6, 0);
    expect(b.windows).toBe(3);
    const seqs = [0, 1, 2].map((i) => d.train.subarray(i * 6, i * 6 + 7));
    const batch = clsBatch(seqs, 6, tok);
    expect(Array.from(batch.labels.data)).toEqual([1, 0, 1]);
    const hi = tok.encode('hi');
    const pad = tok.special.pad;
    expect(Array.from(batch.tokens.data.slice(0, 6))).toEqual([...hi, pad, pad, pad, pad]);
    expect(Array.from(batch.tokens.data.slice(6, 12))).toEqual([...tok.encode('longer text here').slice(0, 5), pad]);
    expect(Array.from(batch.lengths.data)).toEqual([hi.length, 5, 1]);
    writeFileSync(file, 'no tab here\n');
    expect(() => loadLabelled(file, tok, 6)).toThrow(/tiny\.txt:1: expected 'label<TAB>text'/);
  });
});

describe('kiln train --objective cls', () => {
  it('a GPT learns a separable labelled set; validation reports accuracy', () => {
    const words = { pos: ['good', 'great', 'fine', 'happy', 'nice'], neg: ['bad', 'awful', 'sad', 'poor', 'ugly'] };
    const fill = ['the', 'a', 'it', 'was', 'very', 'so'];
    const lines: string[] = [];
    for (let i = 0; i < 200; i++) {
      const l = i % 3 === 0 ? 'neg' : 'pos';
      lines.push(`${l}\t${fill[i % 6]} ${fill[(i * 7) % 6]} ${words[l][(i * 3) % 5]}`);
    }
    const file = join(dir, 'set.txt');
    writeFileSync(file, lines.join('\n') + '\n');
    const r = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'kiln.js'), 'train', 'src/models/gpt.kiln', '--objective', 'cls', '--data', file, '--set', 'd=32,heads=2,layers=1,ctx=16', '--batch', '8', '--steps', '60', '--lr', '3e-3', '--warmup', '5', '--eval-every', '0', '--out', join(dir, 'run'), '--json'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const evals = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((e) => e.type === 'eval');
    expect(evals.length).toBe(1);
    expect(evals[0].accuracy).toBeGreaterThanOrEqual(0.8);
  });
});
