/** Learning-rate schedules: linear warmup from 0, then constant, linear decay, cosine (to 10% of peak) or inverse sqrt. */
import { KilnError } from '../errors.js';

export const SCHEDULES = ['constant', 'linear', 'cosine', 'invsqrt'] as const;
export type ScheduleKind = (typeof SCHEDULES)[number];

export interface LrSchedule {
  kind: ScheduleKind;
  peak: number;
  warmup: number;
  total: number;
  /** Cosine's floor as a fraction of the peak. */
  minRatio?: number;
}

/** Learning rate of step (0-based): during warmup (step + 1) / warmup * peak, so the first step is not zero. */
export function learningRate(s: LrSchedule, step: number): number {
  if (!SCHEDULES.includes(s.kind)) throw new KilnError(`unknown schedule '${s.kind}' (expected ${SCHEDULES.join(', ')})`);
  if (s.warmup > 0 && step < s.warmup) return (s.peak * (step + 1)) / s.warmup;
  const decaySteps = Math.max(1, s.total - s.warmup);
  const progress = Math.min(1, Math.max(0, (step - s.warmup) / decaySteps));
  switch (s.kind) {
    case 'constant':
      return s.peak;
    case 'linear':
      return s.peak * (1 - progress);
    case 'cosine': {
      const floor = s.minRatio ?? 0.1;
      return s.peak * (floor + (1 - floor) * 0.5 * (1 + Math.cos(Math.PI * progress)));
    }
    case 'invsqrt':
      return s.peak * Math.sqrt(Math.max(1, s.warmup) / Math.max(step + 1, Math.max(1, s.warmup)));
  }
}
