import type { EC2Client } from '@aws-sdk/client-ec2';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createAwsProbe } from '../../src/aws/probe.js';
import { type HttpOptions, type HttpServer, startHttp } from '../../src/http/server.js';
import { queueNames } from '../../src/jobs/queues.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { audit, basic, instances, motoEc2, password, user, xss } from './fixtures.js';
import { type PrivateRedis, startPrivateRedis } from './private-redis.js';

let redis: Redis;
let ec2: EC2Client;
const prefix = uniquePrefix('http');
const started: HttpServer[] = [];
let ops: Queue;
let failedJobId: string;
let listed = 0;

function options(overrides: Partial<HttpOptions> = {}): HttpOptions {
  return {
    host: '127.0.0.1',
    port: 0,
    user,
    password,
    redis,
    prefix,
    probeAws: createAwsProbe(ec2),
    listInstances: async () => {
      listed += 1;
      return instances;
    },
    recentAudit: async () => audit,
    ...overrides,
  };
}

async function serve(overrides: Partial<HttpOptions> = {}): Promise<string> {
  const server = await startHttp(options(overrides));
  started.push(server);
  return `http://127.0.0.1:${server.port}`;
}

const authed = { authorization: basic() };

beforeAll(async () => {
  redis = testRedis();
  ec2 = motoEc2(inject('motoUrl'));
  // moto builds its EC2 backend on the first request, which can take seconds on a busy machine.
  await createAwsProbe(ec2)();
  ops = new Queue(queueNames.ops, { connection: redis, prefix });
  // One job that fails for real, so there is something to retry.
  const job = await ops.add('ping', { requestedBy: 'U1' }, { attempts: 1 });
  failedJobId = job.id ?? '';
  const worker = new Worker(
    queueNames.ops,
    async () => {
      throw new Error('boom');
    },
    { connection: redis, prefix },
  );
  await new Promise<void>((resolve) => worker.once('failed', () => resolve()));
  await worker.close();
  await ops.add('ping', { requestedBy: 'U2' });
  await ops.add(xss, { requestedBy: 'U3' });
});

afterAll(async () => {
  await Promise.all(started.map((s) => s.close()));
  await ops.close();
  await dropPrefix(redis, prefix);
  redis.disconnect();
  ec2.destroy();
});

describe('the dashboard server', () => {
  it('when no password is configured, then it refuses to start', async () => {
    await expect(startHttp(options({ password: '' }))).rejects.toThrow(/needs a password/);
    await expect(startHttp(options({ password: undefined }))).rejects.toThrow(/needs a password/);
  });

  it('when a request has no or wrong credentials, then everything but health answers 401', async () => {
    const base = await serve();
    for (const path of ['/fleet', '/jobs/', '/jobs', '/jobs/api/queues', '/metrics', '/', '/nope']) {
      const anonymous = await fetch(`${base}${path}`);
      expect(anonymous.status, path).toBe(401);
      expect(anonymous.headers.get('www-authenticate')).toContain('Basic realm="fleetbot"');
      const wrong = await fetch(`${base}${path}`, { headers: { authorization: basic(user, 'nope') } });
      expect(wrong.status, path).toBe(401);
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect((await fetch(`${base}/jobs/`, { headers: authed })).status).toBe(200);
    expect((await fetch(`${base}/nope`, { headers: authed })).status).toBe(404);
  });

  it('when metrics are made public, then only /metrics opens', async () => {
    const base = await serve({ metricsPublic: true });
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
    expect((await fetch(`${base}/fleet`)).status).toBe(401);
    expect((await fetch(`${base}/jobs/api/queues`)).status).toBe(401);
  });

  it('when jobs are queued, then /metrics lists every metric and counts jobs per queue and state', async () => {
    const base = await serve();
    const before = listed;
    const res = await fetch(`${base}/metrics`, { headers: authed });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    for (const name of [
      'fleetbot_jobs',
      'fleetbot_job_duration_seconds',
      'fleetbot_aws_calls_total',
      'fleetbot_chat_messages_total',
      'fleetbot_chat_rate_limited_total',
      'fleetbot_secrets_stored_total',
      'fleetbot_instances',
    ])
      expect(text).toContain(`# TYPE ${name} `);
    expect(text).toContain('fleetbot_jobs{queue="ops",state="waiting"} 2');
    expect(text).toContain('fleetbot_jobs{queue="ops",state="failed"} 1');
    expect(text).toContain('fleetbot_jobs{queue="rollout",state="waiting"} 0');
    expect(text).toContain('fleetbot_instances{state="running"} 2');
    expect(text).toContain('fleetbot_instances{state="stopped"} 1');
    expect(text).toContain('fleetbot_instances{state="terminated"} 0');
    // A second scrape within 30 s reuses the EC2 listing.
    await fetch(`${base}/metrics`, { headers: authed });
    expect(listed - before).toBe(1);
  });

  it('when the local Redis answers, then /readyz reports its eviction policy', async () => {
    const base = await serve();
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      status: 'ready',
      checks: { redis: 'ok', aws: 'ok', redisMaxmemoryPolicy: 'noeviction' },
    });
  });

  it('when a check hangs, then /readyz answers not ready once its deadline passes', async () => {
    // The AWS probe never settles, so any answer at all is the deadline's doing. The deadline is long
    // enough for the Redis checks to answer on a busy machine: they must still come back ok.
    const readyTimeoutMs = 1000;
    const base = await serve({ probeAws: () => new Promise<void>(() => {}), readyTimeoutMs });
    const started = Date.now();
    const res = await fetch(`${base}/readyz`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { checks: unknown }).checks).toEqual({
      redis: 'ok',
      aws: 'unreachable',
      redisMaxmemoryPolicy: 'noeviction',
    });
    // It waited the deadline out rather than giving up on the probe early.
    expect(Date.now() - started).toBeGreaterThanOrEqual(readyTimeoutMs - 5);
  });

  describe('with a Redis that evicts', () => {
    let evicting: PrivateRedis;
    beforeAll(async () => {
      evicting = await startPrivateRedis(['--maxmemory-policy', 'allkeys-lru']);
    });
    afterAll(async () => evicting.stop());

    it('when maxmemory-policy is allkeys-lru, then /readyz is 503 and names the policy', async () => {
      const base = await serve({ redis: evicting.redis });
      const res = await fetch(`${base}/readyz`);
      expect(res.status).toBe(503);
      expect(await res.json()).toEqual({
        status: 'not ready',
        checks: { redis: 'ok', aws: 'ok', redisMaxmemoryPolicy: 'allkeys-lru' },
      });
    });
  });

  describe('with a Redis that refuses CONFIG', () => {
    let managed: PrivateRedis;
    beforeAll(async () => {
      managed = await startPrivateRedis(['--rename-command', 'CONFIG', '']);
    });
    afterAll(async () => managed.stop());

    it('when the policy cannot be read, then /readyz says unknown and stays ready', async () => {
      const base = await serve({ redis: managed.redis });
      const res = await fetch(`${base}/readyz`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({
        status: 'ready',
        checks: { redis: 'ok', aws: 'ok', redisMaxmemoryPolicy: 'unknown' },
      });
    });
  });

  it('when the fleet page renders, then values are escaped and no script may run', async () => {
    const base = await serve();
    const res = await fetch(`${base}/fleet`, { headers: authed });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('script-src');
    const html = await res.text();
    expect(html).not.toContain(xss);
    expect(html).toContain('&lt;img src=x onerror=alert(1)&gt;');
    expect(html).not.toMatch(/<script/i);
    expect(html).toContain('i-0123456789abcdef2');
    expect(html).toContain('denied: admin only');
  });

  it('when the audit store or EC2 fails, then the fleet page still shows the rest', async () => {
    const base = await serve({
      listInstances: async () => {
        throw new Error('EC2 down');
      },
      recentAudit: async () => {
        throw new Error('store down');
      },
    });
    const html = await (await fetch(`${base}/fleet`, { headers: authed })).text();
    expect(html).toContain('EC2 could not be read');
    expect(html).toContain('The audit log could not be read');
    expect(html).toContain('Running jobs (2)');
  });

  it('when actions are not allowed, then bull-board refuses a retry', async () => {
    const base = await serve();
    const res = await fetch(`${base}/jobs/api/queues/ops/${failedJobId}/retry`, {
      method: 'PUT',
      headers: authed,
    });
    expect(res.status).toBe(405);
    expect(await (await ops.getJob(failedJobId))?.getState()).toBe('failed');
    const queues = (await (await fetch(`${base}/jobs/api/queues`, { headers: authed })).json()) as {
      queues: { name: string; readOnlyMode: boolean }[];
    };
    expect(queues.queues.map((q) => [q.name, q.readOnlyMode]).sort()).toEqual([
      ['ops', true],
      ['provision', true],
      ['rollout', true],
    ]);
  });

  it('when another site sends a write with the operator credentials, then it is refused', async () => {
    const base = await serve({ allowActions: true });
    const res = await fetch(`${base}/jobs/api/queues/ops/${failedJobId}/retry`, {
      method: 'PUT',
      headers: { ...authed, origin: 'https://evil.example' },
    });
    expect(res.status).toBe(403);
    expect(await (await ops.getJob(failedJobId))?.getState()).toBe('failed');
  });

  it('when actions are allowed, then bull-board retries a failed job', async () => {
    const base = await serve({ allowActions: true });
    const res = await fetch(`${base}/jobs/api/queues/ops/${failedJobId}/retry`, {
      method: 'PUT',
      headers: { ...authed, origin: base },
    });
    expect(res.status).toBe(204);
    expect(await (await ops.getJob(failedJobId))?.getState()).toBe('waiting');
  });
});
