import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type HttpServer, startHttp } from '../../src/http/server.js';
import { uniquePrefix } from '../peers/redis.js';
import { password, user } from './fixtures.js';
import { type PrivateRedis, startPrivateRedis } from './private-redis.js';

/**
 * /readyz is asked by every load balancer and probe; one check (Redis PING, the eviction policy,
 * the AWS probe) serves all of them for a few seconds. Counted where the checks land: calls of the
 * AWS probe, and the commands the Redis server itself saw (its own, private Redis). Time is a
 * clock the test moves, so nothing here depends on how fast the machine is.
 */

const ttlMs = 2000;
let store: PrivateRedis;
let server: HttpServer;
let base = '';
let clock = 0;
let awsProbes = 0;
/** What the next AWS probes do; each may be held until the test lets it go. */
let probe: () => Promise<void> = async () => {};

beforeAll(async () => {
  store = await startPrivateRedis([]);
  server = await startHttp({
    host: '127.0.0.1',
    port: 0,
    user,
    password,
    redis: store.redis,
    prefix: uniquePrefix('readyz'),
    probeAws: () => {
      awsProbes += 1;
      return probe();
    },
    listInstances: async () => [],
    recentAudit: async () => [],
    readyCacheMs: ttlMs,
    now: () => clock,
  });
  base = `http://127.0.0.1:${server.port}`;
});

afterAll(async () => {
  await server?.close();
  await store?.stop();
});

/** How often the Redis server ran each command, as it counts them itself. */
async function redisCalls(): Promise<{ ping: number; config: number }> {
  const info = await store.redis.info('commandstats');
  const calls = (command: string) =>
    Number(new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return { ping: calls('ping'), config: calls('config\\|get') };
}

async function checksSince(before: { ping: number; config: number; aws: number }) {
  const now = await redisCalls();
  return { ping: now.ping - before.ping, config: now.config - before.config, aws: awsProbes - before.aws };
}

async function baseline() {
  return { ...(await redisCalls()), aws: awsProbes };
}

const readyz = async () => {
  const res = await fetch(`${base}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string } };
};

describe('/readyz cache', () => {
  it('when many probes arrive at once and again within the TTL, then one check serves them all; after the TTL, one more', async () => {
    const before = await baseline();
    let release = () => {};
    probe = () =>
      new Promise<void>((resolve) => {
        release = resolve;
      });
    const burst = Array.from({ length: 25 }, () => readyz());
    // The check is under way (held at the AWS probe) while the burst is in flight.
    await expect.poll(() => awsProbes - before.aws, { timeout: 15_000 }).toBe(1);
    release();
    const answers = await Promise.all(burst);
    expect(answers.map((a) => a.status)).toEqual(Array(25).fill(200));
    expect(await checksSince(before)).toEqual({ ping: 1, config: 1, aws: 1 });

    probe = async () => {};
    clock += ttlMs - 1;
    for (let i = 0; i < 5; i++) expect((await readyz()).status).toBe(200);
    expect(await checksSince(before)).toEqual({ ping: 1, config: 1, aws: 1 });

    clock += 1;
    const again = await Promise.all(Array.from({ length: 10 }, () => readyz()));
    expect(again.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect(await checksSince(before)).toEqual({ ping: 2, config: 2, aws: 2 });
  });

  it('when a check found a dependency down, then that answer is kept for the TTL too, and the next check sees it back', async () => {
    clock += 10 * ttlMs;
    const before = await baseline();
    probe = async () => {
      throw new Error('AWS down');
    };
    expect(await readyz()).toMatchObject({ status: 503, body: { status: 'not ready' } });
    probe = async () => {};
    clock += ttlMs - 1;
    expect((await readyz()).status).toBe(503);
    expect(awsProbes - before.aws).toBe(1);
    clock += 1;
    expect(await readyz()).toMatchObject({ status: 200, body: { status: 'ready' } });
    expect(await checksSince(before)).toEqual({ ping: 2, config: 2, aws: 2 });
  });
});
