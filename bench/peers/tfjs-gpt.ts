/**
 * The library GPT (src/models/gpt.kiln) written directly in TensorFlow.js: token + learned position embeddings,
 * pre-LN blocks with causal multi-head attention and a GELU(tanh) MLP, final LN, head tied to the token embedding,
 * mean cross-entropy over targets != -100. Parameters are Kiln's, by Kiln's names and [in, out] layout, so the
 * same weights give the same loss. Used as the benchmark peer and as the autodiff test's second oracle.
 */
import type * as TF from '@tensorflow/tfjs-core';

export interface GptShape {
  vocab: number;
  d: number;
  heads: number;
  layers: number;
  B: number;
  T: number;
}

export function tfGptLoss(tf: typeof TF, P: Record<string, TF.Tensor>, tokens: TF.Tensor, targets: Int32Array, s: GptShape): TF.Scalar {
  const { B, T } = s;
  const logits = tfGptLogits(tf, P, tokens, s);
  const valid: number[] = Array.from(targets, (t) => (t === -100 ? 0 : 1));
  const onehot = tf.oneHot(tf.tensor(Array.from(targets, (t) => Math.max(t, 0)), [B * T], 'int32'), s.vocab);
  const nll = tf.neg(tf.sum(tf.mul(tf.logSoftmax(logits), onehot), -1));
  return tf.div(tf.sum(tf.mul(nll, tf.tensor(valid))), tf.scalar(Math.max(1, valid.reduce((a, b) => a + b, 0)))) as TF.Scalar;
}

/** The logits [B * T, vocab] of the library GPT (its `forward` entry). */
export function tfGptLogits(tf: typeof TF, P: Record<string, TF.Tensor>, tokens: TF.Tensor, s: GptShape): TF.Tensor {
  const { B, T, d, heads } = s;
  const dh = d / heads;
  const ln = (x: TF.Tensor, p: string) => {
    const xc = tf.sub(x, tf.mean(x, -1, true));
    const v = tf.mean(tf.square(xc), -1, true);
    return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(v, 1e-5))), P[`${p}.g`]), P[`${p}.b`]);
  };
  const linear = (x: TF.Tensor, p: string) => tf.add(tf.reshape(tf.matMul(tf.reshape(x, [B * T, x.shape.at(-1)!]), P[`${p}.w`]), [B, T, -1]), P[`${p}.b`]);
  const split = (x: TF.Tensor) => tf.transpose(tf.reshape(x, [B, T, heads, dh]), [0, 2, 1, 3]);
  const gelu = (x: TF.Tensor) => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(x, tf.mul(0.044715, tf.mul(x, tf.mul(x, x))))))));
  let x = tf.add(tf.gather(P.wte, tokens), tf.slice(P.wpe, [0, 0], [T, d]));
  const causal = tf.greaterEqual(tf.reshape(tf.range(0, T), [T, 1]), tf.reshape(tf.range(0, T), [1, T]));
  const neg = tf.fill([B, heads, T, T], -1e9);
  for (let l = 0; l < s.layers; l++) {
    const h = ln(x, `h.${l}.ln_1`);
    const [q, k, v] = ['q', 'k', 'v'].map((n) => split(linear(h, `h.${l}.attn.${n}`)));
    const sc = tf.where(causal, tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(dh)), neg);
    const o = tf.reshape(tf.transpose(tf.matMul(tf.softmax(sc), v), [0, 2, 1, 3]), [B, T, d]);
    x = tf.add(x, linear(o, `h.${l}.attn.proj`));
    x = tf.add(x, linear(gelu(linear(ln(x, `h.${l}.ln_2`), `h.${l}.mlp.fc`)), `h.${l}.mlp.proj`));
  }
  return tf.matMul(tf.reshape(ln(x, 'ln_f'), [B * T, d]), P.wte, false, true);
}
