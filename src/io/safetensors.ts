/**
 * safetensors, the tensor file format the ecosystem uses: an 8-byte little-endian header length, a JSON header
 * {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {string: string}}, then the raw bytes.
 * Reading validates everything (header, offsets, sizes, dtypes) before returning anything.
 */
import { readFileSync } from 'node:fs';
import { KilnError } from '../errors.js';
import type { HostTensor } from '../ir/tensor.js';
import { allocData, bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { numel } from '../ir/types.js';

const TO_ST: Record<DType, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', u32: 'U32', bool: 'BOOL' };
const FROM_ST: Record<string, DType> = { F32: 'f32', F16: 'f16', BF16: 'bf16', I32: 'i32', U32: 'u32', BOOL: 'bool' };
const SIZE: Record<DType, number> = { f32: 4, f16: 2, bf16: 2, i32: 4, u32: 4, bool: 1 };

export function encodeSafetensors(tensors: Record<string, HostTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const names = Object.keys(tensors).sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const name of names) {
    const t = tensors[name];
    const bytes = numel(t.shape) * SIZE[t.dtype];
    header[name] = { dtype: TO_ST[t.dtype], shape: [...t.shape], data_offsets: [off, off + bytes] };
    off += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // the data section starts 8-byte aligned
  const hbytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hbytes.length + off);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  for (const name of names) {
    const t = tensors[name];
    const n = numel(t.shape);
    for (let i = 0; i < n; i++, p += SIZE[t.dtype]) {
      const v = t.data[i];
      switch (t.dtype) {
        case 'f32': dv.setFloat32(p, v, true); break;
        case 'f16': dv.setUint16(p, f32ToF16Bits(v), true); break;
        case 'bf16': dv.setUint16(p, f32ToBf16Bits(v), true); break;
        case 'i32': dv.setInt32(p, v, true); break;
        case 'u32': dv.setUint32(p, v, true); break;
        case 'bool': dv.setUint8(p, v ? 1 : 0); break;
      }
    }
  }
  return out;
}

export interface SafetensorsFile {
  tensors: Record<string, HostTensor>;
  metadata: Record<string, string>;
}

export function decodeSafetensors(bytes: Uint8Array, file = '<safetensors>'): SafetensorsFile {
  const bad = (why: string): never => {
    throw new KilnError(`${file}: not a valid safetensors file: ${why}`);
  };
  if (bytes.length < 8) bad(`only ${bytes.length} bytes`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = Number(dv.getBigUint64(0, true));
  if (hlen > bytes.length - 8 || hlen > 100_000_000) bad(`header length ${hlen} exceeds the file (${bytes.length} bytes): truncated?`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + hlen)));
  } catch {
    return bad('the header is not valid JSON (corrupt file?)');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad('the header is not a JSON object');
  const dataLen = bytes.length - 8 - hlen;
  const metadata = (header.__metadata__ ?? {}) as Record<string, string>;
  const tensors: Record<string, HostTensor> = {};
  const ranges: [number, number, string][] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const e = raw as { dtype?: string; shape?: number[]; data_offsets?: number[] };
    const dtype = FROM_ST[e?.dtype ?? ''];
    if (!dtype) bad(`tensor '${name}' has unsupported dtype ${JSON.stringify(e?.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isInteger(d) && d >= 0)) bad(`tensor '${name}' has an invalid shape`);
    const [b, en] = e.data_offsets ?? [];
    if (!Number.isInteger(b) || !Number.isInteger(en) || b < 0 || en < b) bad(`tensor '${name}' has invalid data_offsets`);
    if (en > dataLen) bad(`tensor '${name}' ends at byte ${en} but the data section has ${dataLen} bytes (truncated file)`);
    const n = numel(e.shape!);
    if (en - b !== n * SIZE[dtype]) bad(`tensor '${name}' has ${en - b} bytes, its shape [${e.shape!.join(', ')}] needs ${n * SIZE[dtype]}`);
    ranges.push([b, en, name]);
    const data = allocData(dtype, n);
    const p0 = 8 + hlen + b;
    for (let i = 0; i < n; i++) {
      const p = p0 + i * SIZE[dtype];
      switch (dtype) {
        case 'f32': data[i] = dv.getFloat32(p, true); break;
        case 'f16': data[i] = f16BitsToF32(dv.getUint16(p, true)); break;
        case 'bf16': data[i] = bf16BitsToF32(dv.getUint16(p, true)); break;
        case 'i32': data[i] = dv.getInt32(p, true); break;
        case 'u32': data[i] = dv.getUint32(p, true); break;
        case 'bool': data[i] = dv.getUint8(p) ? 1 : 0; break;
      }
    }
    tensors[name] = { dtype, shape: e.shape!, data };
  }
  ranges.sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) bad(`tensors '${ranges[i - 1][2]}' and '${ranges[i][2]}' overlap`);
  }
  return { tensors, metadata };
}

export function readSafetensorsFile(path: string): SafetensorsFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch {
    throw new KilnError(`cannot read ${path}: no such file`);
  }
  return decodeSafetensors(bytes, path);
}

export function readSafetensors(path: string): Record<string, HostTensor> {
  return readSafetensorsFile(path).tensors;
}
