import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/peers/global-setup.ts'],
    // Measured with stress-ng on both cores during a full run: tests on the default budget took up to
    // 15-20 s (a tsx process starting, cfn-lint), against 20 s. About three times that, so a slow
    // machine is not a failure while a hang still is; hooks keep twice the tests' budget.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // expect.poll waits for something that does happen, only later on a busy machine; its 1 s default
    // would turn a slow machine into a failed test.
    expect: { poll: { timeout: 10_000 } },
    // Files run in parallel across forks, each isolated by its own Redis prefix and moto account. Most
    // of a rollout file's time is spent waiting on instances and pacers, not on CPU: three at once keep
    // two cores busy (load about 2 in a full run).
    pool: 'forks',
    maxWorkers: 3,
  },
});
