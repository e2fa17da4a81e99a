import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkSource, formatSource, MODELS_DIR } from '../../src/frontend/index.js';
import { KilnError } from '../../src/errors.js';
import { KilnLexer } from '../../src/frontend/lexer.js';
import { rand } from './helpers.js';

const MODELS = ['gpt', 'bert', 'prefixlm', 't5'].map((m) => ({ path: join(MODELS_DIR, `${m}.kiln`), text: readFileSync(join(MODELS_DIR, `${m}.kiln`), 'utf8') }));
const CHARS = '()[]{},:.=+-*/@#"\'\\<>!%&|^~`$?; \n\tabcxyzBT019_';

/** One seeded mutation: delete, duplicate, swap or replace tokens, or splice in random characters. */
function mutate(text: string, r: () => number): string {
  const toks = KilnLexer.tokenize(text).tokens;
  const pick = () => toks[Math.floor(((r() + 1) / 2) * toks.length)];
  const n = 1 + Math.floor(((r() + 1) / 2) * 3);
  let out = text;
  for (let k = 0; k < n; k++) {
    const t = pick();
    const s = t.startOffset, e = t.endOffset! + 1;
    const mode = Math.floor(((r() + 1) / 2) * 5);
    if (mode === 0) out = out.slice(0, s) + out.slice(e);
    else if (mode === 1) out = out.slice(0, e) + ' ' + out.slice(s, e) + out.slice(e);
    else if (mode === 2) {
      const u = pick();
      if (u.startOffset > e) out = out.slice(0, s) + u.image + out.slice(e, u.startOffset) + t.image + out.slice(u.endOffset! + 1);
    } else if (mode === 3) {
      const u = pick();
      out = out.slice(0, s) + u.image + out.slice(e);
    } else {
      const len = 1 + Math.floor(((r() + 1) / 2) * 4);
      const junk = Array.from({ length: len }, () => CHARS[Math.floor(((r() + 1) / 2) * CHARS.length)]).join('');
      out = out.slice(0, s) + junk + out.slice(s);
    }
  }
  return out;
}

describe('fuzz: mutated models end in diagnostics or success, never a crash or a hang', () => {
  it('2000 seeded mutations through check and fmt', () => {
    const r = rand(20240611);
    let ok = 0, diagnosed = 0;
    for (let i = 0; i < 2000; i++) {
      const m = MODELS[i % MODELS.length];
      const src = mutate(m.text, r);
      const t0 = performance.now();
      let diags;
      try {
        diags = checkSource(src, m.path, { set: { layers: 1 }, dims: { T: 8 } });
      } catch (e) {
        // KilnErrors without a position (e.g. a --set key the mutation removed) are user errors too.
        if (!(e instanceof KilnError)) throw new Error(`case ${i}: ${String(e)}\n--- source ---\n${src}`);
        diags = [{ message: e.message, formatted: e.message }];
      }
      for (const d of diags) expect(d.formatted.length).toBeGreaterThan(0);
      if (diags.length) diagnosed++;
      else ok++;
      try {
        const f = formatSource(src, m.path);
        expect(formatSource(f, m.path)).toBe(f);
      } catch (e) {
        if (!(e instanceof KilnError)) throw new Error(`fmt case ${i}: ${String(e)}\n--- source ---\n${src}`);
      }
      expect(performance.now() - t0).toBeLessThan(2000);
    }
    // The mutations must exercise both outcomes.
    expect(diagnosed).toBeGreaterThan(500);
    expect(ok).toBeGreaterThan(20);
  }, 120_000);
});
