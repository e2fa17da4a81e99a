// The page's script: loads the exported model from ./model/ (kiln export ... --out examples/gpt-demo/model) and
// generates a continuation of the typed prompt.
import * as gpt from './model/index.js';
import plan from './model/plan.js';
import { generate } from './generate.js';

const T = plan.entries.find((e) => e.name === 'forward').inputs[0].shape[1];
const $ = (id) => document.getElementById(id);
const status = (s) => ($('status').textContent = s);

status('loading the model…');
const t0 = performance.now();
await gpt.load();
status(`ready (model loaded in ${Math.round(performance.now() - t0)} ms)`);
$('go').disabled = false;

$('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('go').disabled = true;
  const prompt = $('prompt').value;
  const seed = Number($('seed').value) || 0;
  $('output').textContent = '';
  status('generating…');
  const t = performance.now();
  try {
    const text = await generate(gpt.forward, prompt, { T, maxTokens: Number($('tokens').value) || 40, seed, onText: (s) => ($('output').textContent = s) });
    $('output').textContent = text;
    status(`done: ${text.length} characters in ${Math.round(performance.now() - t)} ms`);
  } catch (e) {
    status(`error: ${e.message}`);
  } finally {
    $('go').disabled = false;
  }
});
