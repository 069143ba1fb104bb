import { afterAll, describe, expect, it } from 'vitest';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from './peers/redis.js';
import {
  type FleetbotProcess,
  logEntries,
  startFleetbotProcess,
  waitForLog,
} from './support/fleetbot-process.js';

/**
 * The process-wide handlers runProcess installs, watched from outside: a real fleetbot process
 * (dashboard role, real Redis) that leaves an exception uncaught or a rejection unhandled.
 */

const redis = testRedis();
const prefix = uniquePrefix('crash');

afterAll(async () => {
  await dropPrefix(redis, prefix);
  await redis.quit();
});

function startBreaking(what: 'throw' | 'reject'): FleetbotProcess {
  return startFleetbotProcess(
    {
      AWS_REGION: 'us-east-1',
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      DASHBOARD_LISTEN: '127.0.0.1:0',
      DASHBOARD_PASSWORD: 'crash-test-dashboard-password',
    },
    [what],
    'test/support/crash-process.ts',
  );
}

describe('process-wide crash handlers', () => {
  it('when an exception goes uncaught, then it is logged fatal with its message and stack, and the process exits 1', async () => {
    const p = startBreaking('throw');
    expect(await p.exit).toBe(1);
    const fatal = logEntries(p).find((e) => e.level === 60);
    expect(fatal).toMatchObject({
      msg: 'uncaught exception; exiting',
      origin: 'uncaughtException',
      err: {
        type: 'Error',
        message: 'uncaught on purpose /bot[redacted]/getMe',
        stack: expect.stringContaining('crash-process.ts'),
      },
    });
    // It was fleetbot's own logger (after start), not a bare fallback.
    expect(logEntries(p).some((e) => e.msg === 'fleetbot started')).toBe(true);
    expect(p.out() + p.err()).not.toContain('CANARY');
  });

  it('when a rejection goes unhandled, then it is logged as an error with its message and the process stays up', async () => {
    const p = startBreaking('reject');
    try {
      // Both lines come: fleetbot's log and the fixture's own stdout write race for the pipe.
      const rejection = await waitForLog(p, (e) => e.level === 50, 30_000);
      expect(rejection).toMatchObject({
        msg: 'unhandled promise rejection; the work it belonged to failed',
        err: { type: 'Error', message: 'rejected on purpose /bot[redacted]/getMe' },
      });
      await waitForLog(p, (e) => e.msg === 'still running', 30_000);
      expect(p.child.exitCode).toBeNull();
      p.child.kill('SIGTERM');
      expect(await p.exit).toBe(0);
      expect(p.out() + p.err()).not.toContain('CANARY');
    } finally {
      p.child.kill('SIGKILL');
    }
  });
});
