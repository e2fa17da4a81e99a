/** Command-line settings shared by the stand-alone bench scripts (`npx tsx bench/<name>.ts --set ... --batch N`). */

/** The value after flag `k`, or `d`. */
export const arg = (k: string, d: string): string => {
  const i = process.argv.indexOf(k);
  return i >= 0 ? process.argv[i + 1] : d;
};

/** The model settings of `--set k=v,...` (numbers), the batch `--batch` and the context length T (= ctx). */
export function modelArgs(defaultSet: string): { set: Record<string, number>; B: number; T: number } {
  const set = Object.fromEntries(arg('--set', defaultSet).split(',').map((kv) => kv.split('=')).map(([k, v]) => [k, Number(v)]));
  return { set, B: Number(arg('--batch', '8')), T: Number(set.ctx) };
}
