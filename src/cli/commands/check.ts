import { KilnError } from '../../errors.js';
import { checkFile } from '../../frontend/index.js';
import type { ConfigValue } from '../options.js';

export async function check(file: string, o: { set: Record<string, ConfigValue>; dim: Record<string, number> }): Promise<void> {
  const diags = checkFile(file, { set: o.set, dims: o.dim });
  if (diags.length) throw new KilnError(diags.map((d) => d.formatted ?? d.message).join('\n'));
  process.stdout.write(`${file}: ok\n`);
}
