import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Generous: on a fresh machine lavapipe JIT-compiles every shader on first use (Mesa then caches them on disk),
    // so the first training-step test alone can take a minute or two on two cores.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    // WebGPU tests share one software adapter; two workers match the machine's two cores.
    pool: 'forks',
    maxWorkers: 2,
  },
});
