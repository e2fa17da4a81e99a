// The page's script: loads the exported model from ./model/ (kiln export ... --entry decode --out
// examples/gpt-demo/model) and generates a continuation of the typed prompt.
import * as gpt from './model/index.js';
import { generateText } from './generate.js';

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
    const text = await generateText(gpt, prompt, { maxTokens: Number($('tokens').value) || 40, seed, onText: (s) => ($('output').textContent = s) });
    $('output').textContent = text;
    status(`done: ${text.length} characters in ${Math.round(performance.now() - t)} ms`);
  } catch (e) {
    status(`error: ${e.message}`);
  } finally {
    $('go').disabled = false;
  }
});
