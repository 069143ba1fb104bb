import { describe, expect, inject, it } from 'vitest';
import { awsEnv } from './peers/aws-account.js';
import { freePort } from './peers/free-port.js';
import { testRedisUrl, uniquePrefix } from './peers/redis.js';
import { startFleetbotProcess } from './support/fleetbot-process.js';

const canary = 'CANARY-main-7c1d';

describe('the fleetbot process', () => {
  it('when the configuration is bad, then it exits 1 naming every bad key and printing no value', async () => {
    const p = startFleetbotProcess({
      TELEGRAM_BOT_TOKEN: canary,
      SLACK_SIGNING_SECRET: canary,
      REDIS_URL: canary,
    });
    expect(await p.exit).toBe(1);
    expect(p.err()).toContain('fleetbot: Invalid configuration:');
    for (const key of ['AWS_REGION', 'TELEGRAM_BOT_TOKEN', 'REDIS_URL', 'DASHBOARD_PASSWORD'])
      expect(p.err()).toContain(`- ${key}:`);
    expect(p.err() + p.out()).not.toContain('CANARY');
  });

  it('when the role flag is unknown, then it exits 1 and lists the roles', async () => {
    const p = startFleetbotProcess({ AWS_REGION: 'us-east-1' }, ['--role', 'everything']);
    expect(await p.exit).toBe(1);
    expect(p.err()).toContain(
      '--role must be one or more of bot, worker, dashboard, all, separated by commas',
    );
  });

  it('when Redis does not answer, then it exits 1 and says how to start one', async () => {
    const port = await freePort();
    const p = startFleetbotProcess({ AWS_REGION: 'us-east-1', REDIS_URL: `redis://127.0.0.1:${port}` }, [
      '--role=worker',
    ]);
    expect(await p.exit).toBe(1);
    expect(p.err()).toContain(`Redis does not answer at 127.0.0.1:${port} (REDIS_URL)`);
    expect(p.err()).toContain('redis-server --daemonize yes');
  });

  it('when the dashboard role runs, then health is open, the rest needs auth, and SIGTERM exits 0', async () => {
    const port = await freePort();
    const p = startFleetbotProcess(
      {
        ...awsEnv(inject('motoUrl')),
        REDIS_URL: testRedisUrl,
        REDIS_PREFIX: uniquePrefix('main'),
        DASHBOARD_LISTEN: `127.0.0.1:${port}`,
        DASHBOARD_PASSWORD: canary,
      },
      ['--role', 'dashboard'],
    );
    const base = `http://127.0.0.1:${port}`;
    // Starting takes seconds (tsx compiles first) and over 15 s on a busy machine: that is not the point.
    await expect.poll(() => p.out(), { timeout: 60_000 }).toContain('fleetbot started');
    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({
      status: 'ready',
      checks: { redis: 'ok', aws: 'ok', redisMaxmemoryPolicy: 'noeviction' },
    });
    expect((await fetch(`${base}/`)).status).toBe(401);
    const wrong = await fetch(`${base}/`, { headers: { authorization: `Basic ${btoa('ops:nope')}` } });
    expect(wrong.status).toBe(401);
    const right = await fetch(`${base}/`, { headers: { authorization: `Basic ${btoa(`ops:${canary}`)}` } });
    expect(right.status).toBe(404);
    p.child.kill('SIGTERM');
    expect(await p.exit).toBe(0);
    expect(p.out()).toContain('fleetbot stopped');
    expect(p.out() + p.err()).not.toContain('CANARY');
  }, 90_000);
});
