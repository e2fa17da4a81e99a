/**
 * Ordinary mistakes at the command line are user errors: a message, exit 1, no stack trace, never the
 * "internal error" exit 70.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeNpy, encodeNpy } from '../../src/io/npy.js';

const kiln = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'kiln.js'), ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const userError = (r: { code: number | null; err: string }, message: string | RegExp) => {
  expect(r.code, r.err).toBe(1);
  expect(r.err).not.toMatch(/internal error|\n\s+at /);
  if (typeof message === 'string') expect(r.err).toContain(message);
  else expect(r.err).toMatch(message);
};

/** An .npy holding int64 values (NumPy's default integer type). */
function int64Npy(values: bigint[]): Uint8Array {
  const proto = encodeNpy({ dtype: 'i32', shape: [values.length], data: new Int32Array(values.length) });
  const header = new TextDecoder().decode(proto.subarray(10, 10 + new DataView(proto.buffer).getUint16(8, true))).replace("'<i4'", "'<i8'");
  const out = new Uint8Array(10 + header.length + values.length * 8);
  out.set(proto.subarray(0, 10));
  new DataView(out.buffer).setUint16(8, header.length, true);
  out.set(new TextEncoder().encode(header), 10);
  const body = new DataView(out.buffer, 10 + header.length);
  values.forEach((v, i) => body.setBigInt64(i * 8, v, true));
  return out;
}

describe('user errors, not internal errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-err-'));
  const model = join(dir, 'ids.kiln');
  writeFileSync(model, 'model m {\n  d: int = 4\n}\n\nentry loss(ids: i32[2]) -> loss: f32 {\n  param emb: f32[8, 4] = normal(0.02)\n  return sum(emb[ids])\n}\n');

  it('.npy: int64 ids past int32 are refused (run and grad), in range they read exactly; a negative shape is refused', () => {
    writeFileSync(join(dir, 'ok.npy'), int64Npy([3n, 7n]));
    expect(Array.from(decodeNpy(int64Npy([3n, -5n, 2147483647n])).data)).toEqual([3, -5, 2147483647]);
    writeFileSync(join(dir, 'big.npy'), int64Npy([3n, 2n ** 32n + 3n]));
    const msg = `big.npy: not a valid .npy file: element 1 is 4294967299, outside the range of int32 (-2147483648 .. 2147483647) that <i8 values are read as`;
    userError(kiln('run', model, '--entry', 'loss', '--input', `ids=${join(dir, 'big.npy')}`), msg);
    userError(kiln('grad', model, '--input', `ids=${join(dir, 'big.npy')}`, '--save-grads', join(dir, 'g.safetensors')), msg);
    const neg = encodeNpy({ dtype: 'f32', shape: [2, 4], data: new Float32Array(8) });
    const text = new TextDecoder('latin1').decode(neg).replace('(2, 4)', '(-1, 4)');
    expect(() => decodeNpy(Uint8Array.from(text, (c) => c.charCodeAt(0)), 'neg.npy')).toThrow("neg.npy: not a valid .npy file: shape (-1, 4) has an invalid dimension '-1'");
  });

  it('files and folders in the wrong place: a folder as source or import, -o a folder, --save-outputs a file, --dim too large', () => {
    mkdirSync(join(dir, 'x.kiln'));
    userError(kiln('check', join(dir, 'x.kiln')), `cannot read ${join(dir, 'x.kiln')}: it is a folder`);
    const imp = join(dir, 'imp.kiln');
    writeFileSync(imp, 'import "x"\nmodel m {\n  d: int = 4\n}\n\nentry forward(x: f32[d]) -> y: f32[d] {\n  return x\n}\n');
    userError(kiln('check', imp), `${imp}:1:1: error: cannot read imported file 'x' (`);
    userError(kiln('compile', model, '--entry', 'loss', '-o', dir), `error: -o ${dir}: cannot write: it is a folder (give a file name)`);
    writeFileSync(join(dir, 'afile'), '');
    userError(kiln('run', model, '--entry', 'loss', '--save-outputs', join(dir, 'afile')), `--save-outputs ${join(dir, 'afile')}: cannot create the folder: a file is in the way`);
    userError(kiln('run', model, '--entry', 'loss', '--dim', 'B=1e12'), 'error: --dim B=1e12 is too large: a dimension is at most 2147483647');
  });

  it('--data that is a device or a FIFO is refused before training', () => {
    userError(kiln('train', 'src/models/gpt.kiln', '--device', 'interp', '--data', '/dev/null', '--out', join(dir, 'run')), 'error: --data /dev/null is neither a file nor a folder');
  });
});
