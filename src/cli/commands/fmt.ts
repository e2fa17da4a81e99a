import { readFileSync, writeFileSync } from 'node:fs';
import { KilnError } from '../../errors.js';
import { formatSource } from '../../frontend/index.js';

export async function fmt(file: string, o: { write?: boolean; check?: boolean }): Promise<void> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    throw new KilnError(`cannot read ${file}: no such file`);
  }
  const out = formatSource(text, file);
  if (o.check) {
    if (out !== text) throw new KilnError(`${file} is not canonically formatted (run: kiln fmt -w ${file})`);
    return;
  }
  if (o.write) writeFileSync(file, out);
  else process.stdout.write(out);
}
