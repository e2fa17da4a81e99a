/**
 * NumPy .npy files (format version 1.0/2.0), the exchange format for `kiln run --input` and `--save-outputs`,
 * so results can be compared with NumPy/PyTorch tensor by tensor. Little-endian, C order only.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { KilnError } from '../errors.js';
import type { HostTensor } from '../ir/tensor.js';
import { allocData, f16BitsToF32, f32ToF16Bits } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { numel } from '../ir/types.js';

// NumPy has no bfloat16: bf16 tensors are written widened to f32 (exact), and read back as f32.
const DESCR: Record<DType, string> = { f32: '<f4', f16: '<f2', bf16: '<f4', i32: '<i4', u32: '<u4', bool: '|b1' };
const FROM_DESCR: Record<string, DType> = { '<f4': 'f32', '<f2': 'f16', '<i4': 'i32', '<u4': 'u32', '|b1': 'bool' };

export function encodeNpy(t: HostTensor): Uint8Array {
  const shape = t.shape.length === 1 ? `(${t.shape[0]},)` : `(${t.shape.join(', ')})`;
  let header = `{'descr': '${DESCR[t.dtype]}', 'fortran_order': False, 'shape': ${shape}, }`;
  const pre = 10;
  const pad = 64 - ((pre + header.length + 1) % 64);
  header += ' '.repeat(pad % 64) + '\n';
  const n = numel(t.shape);
  const itemsize = t.dtype === 'f16' ? 2 : t.dtype === 'bool' ? 1 : 4;
  const out = new Uint8Array(pre + header.length + n * itemsize);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0], 0);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[pre + i] = header.charCodeAt(i);
  const body = new DataView(out.buffer, pre + header.length);
  for (let i = 0; i < n; i++) {
    const v = t.data[i];
    switch (t.dtype) {
      case 'f32':
      case 'bf16':
        body.setFloat32(i * 4, v, true);
        break;
      case 'f16':
        body.setUint16(i * 2, f32ToF16Bits(v), true);
        break;
      case 'i32':
        body.setInt32(i * 4, v, true);
        break;
      case 'u32':
        body.setUint32(i * 4, v, true);
        break;
      case 'bool':
        body.setUint8(i, v ? 1 : 0);
        break;
    }
  }
  return out;
}

export function decodeNpy(bytes: Uint8Array, file = '<npy>'): HostTensor {
  const bad = (why: string): never => {
    throw new KilnError(`${file}: not a valid .npy file: ${why}`);
  };
  if (bytes.length < 10 || bytes[0] !== 0x93 || String.fromCharCode(...bytes.slice(1, 6)) !== 'NUMPY') bad('missing magic string');
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + hlen > bytes.length) bad('truncated header');
  const header = new TextDecoder().decode(bytes.slice(start, start + hlen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) bad('unreadable header');
  const dtypeMap: Record<string, DType> = { ...FROM_DESCR, '<i8': 'i32', '<f8': 'f32', '|u1': 'u32', '<u8': 'u32' };
  const dtype = dtypeMap[descr!];
  if (!dtype) bad(`unsupported dtype ${descr} (supported: float32, float16, float64, int32, int64, uint32, bool)`);
  if (fortran === 'True') bad('Fortran order is not supported; save with np.ascontiguousarray');
  const shape = shapeText!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length)
    .map(Number);
  const badDim = shape.findIndex((d) => !Number.isSafeInteger(d) || d < 0);
  if (badDim >= 0) bad(`shape (${shapeText!.trim()}) has an invalid dimension '${shapeText!.split(',')[badDim]?.trim()}' (dimensions are non-negative integers)`);
  const n = numel(shape);
  if (n > 2 ** 31 - 1) bad(`shape (${shape.join(', ')}) has ${n} elements, more than a tensor may hold (${2 ** 31 - 1})`);
  const item = { '<f4': 4, '<f2': 2, '<i4': 4, '<u4': 4, '|b1': 1, '<i8': 8, '<f8': 8, '|u1': 1, '<u8': 8 }[descr!]!;
  const off = start + hlen;
  if (off + n * item > bytes.length) bad(`truncated data: shape (${shape.join(', ')}) needs ${n * item} bytes, file has ${bytes.length - off}`);
  const data = allocData(dtype, n);
  // int64/uint64 are read as 32-bit: a value that does not fit is refused, never wrapped (2^32 + 3 is not 3)
  const narrow = (v: bigint, lo: number, hi: number, i: number): number => {
    if (v < BigInt(lo) || v > BigInt(hi)) bad(`element ${i} is ${v}, outside the range of ${dtype === 'i32' ? 'int32' : 'uint32'} (${lo} .. ${hi}) that ${descr} values are read as`);
    return Number(v);
  };
  const body = new DataView(bytes.buffer, bytes.byteOffset + off);
  for (let i = 0; i < n; i++) {
    switch (descr) {
      case '<f4': data[i] = body.getFloat32(i * 4, true); break;
      case '<f8': data[i] = body.getFloat64(i * 8, true); break;
      case '<f2': data[i] = f16BitsToF32(body.getUint16(i * 2, true)); break;
      case '<i4': data[i] = body.getInt32(i * 4, true); break;
      case '<i8': data[i] = narrow(body.getBigInt64(i * 8, true), -(2 ** 31), 2 ** 31 - 1, i); break;
      case '<u4': data[i] = body.getUint32(i * 4, true); break;
      case '<u8': data[i] = narrow(body.getBigUint64(i * 8, true), 0, 2 ** 32 - 1, i); break;
      case '|u1': data[i] = body.getUint8(i); break;
      case '|b1': data[i] = body.getUint8(i) ? 1 : 0; break;
    }
  }
  return { dtype, shape, data };
}

export function readNpy(path: string): HostTensor {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new KilnError(`cannot read ${path}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : (code ?? String(e))}`);
  }
  return decodeNpy(bytes, path);
}

export function writeNpy(path: string, t: HostTensor): void {
  try {
    writeFileSync(path, encodeNpy(t));
  } catch (e) {
    throw new KilnError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}
