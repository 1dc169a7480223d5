import { defineConfig } from 'vitest/config';

// Native addons are not safe to share across worker threads: every test file
// runs in its own forked process. Kernel tests touch global kernel state
// (device names, loop devices), so they also run one file at a time.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          pool: 'forks',
          // A bound for a hang, not a speed check: on a busy machine the
          // 3,000-file migration alone took over 5 s (vitest's default).
          testTimeout: 60_000,
        },
      },
      {
        // On the host, as a user: the VM harness itself and the packed package.
        test: {
          name: 'host',
          include: ['test/host/**/*.test.ts'],
          pool: 'forks',
          testTimeout: 180_000,
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['test/kernel/**/*.test.ts'],
          pool: 'forks',
          poolOptions: { forks: { singleFork: true } },
          // Bounds for a hang: the sanitizer stage under emulation, on a
          // machine with both CPUs busy, runs some tests for minutes.
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
