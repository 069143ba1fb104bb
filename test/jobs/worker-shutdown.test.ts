import { Queue } from 'bullmq';
import { afterAll, describe, expect, it } from 'vitest';
import type { ChatPlatform, Outbox } from '../../src/core/chat.js';
import { openQueues, queueNames } from '../../src/jobs/queues.js';
import { startWorkers, type WorkerDeps } from '../../src/jobs/worker.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { capturedLogger } from '../support/quiet-log.js';

const redis = testRedis();
const prefixes: string[] = [];

afterAll(async () => {
  for (const prefix of prefixes) await dropPrefix(redis, prefix);
  await redis.quit();
});

const edits: string[] = [];
const outbox: Outbox = {
  send: async () => undefined,
  edit: async (_ref, message) => {
    edits.push(message.text);
  },
};

/** Workers whose ping probe waits for `probe`; the other queues stay empty in these tests. */
function workersWithProbe(prefix: string, probe: () => Promise<void>) {
  const deps = {
    ping: { outboxes: { console: outbox }, probeAws: probe, now: Date.now, workerName: 'w1' },
  } as Pick<WorkerDeps, 'ping'> as WorkerDeps;
  return startWorkers(redis, { prefix, jobLockMs: 30_000 }, deps, capturedLogger().log);
}

async function stateOf(prefix: string, id: string) {
  const queue = new Queue(queueNames.ops, { connection: redis, prefix });
  const state = await queue.getJobState(id);
  await queue.close();
  return state;
}

async function pingJob(prefix: string) {
  const queues = openQueues(redis, prefix);
  const message = { platform: 'console' as ChatPlatform, chatId: 'c', messageId: '1' };
  const id = await queues.ping({ requestedBy: 'ops', requestedAt: Date.now(), message });
  return { queues, id };
}

describe('worker shutdown', () => {
  it('when a job finishes within the grace, then closing waits for it', async () => {
    const prefix = uniquePrefix('shutdown');
    prefixes.push(prefix);
    let started = false;
    const workers = workersWithProbe(prefix, async () => {
      started = true;
      await new Promise((resolve) => setTimeout(resolve, 300));
    });
    const { queues, id } = await pingJob(prefix);
    await expect.poll(() => started, { timeout: 5000 }).toBe(true);
    await workers.close(10_000);
    expect(await stateOf(prefix, id)).toBe('completed');
    expect(edits.some((t) => t.startsWith('Pong from worker w1'))).toBe(true);
    await queues.close();
  });

  it('when a job outlasts the grace, then closing returns after the grace and leaves the job to another worker', async () => {
    const prefix = uniquePrefix('shutdown');
    prefixes.push(prefix);
    let release: () => void = () => {};
    let started = false;
    const workers = workersWithProbe(prefix, () => {
      started = true;
      return new Promise<void>((resolve) => {
        release = resolve;
      });
    });
    const { queues, id } = await pingJob(prefix);
    await expect.poll(() => started, { timeout: 5000 }).toBe(true);
    const closing = Date.now();
    // The job never finishes on its own, so close() returning at all is the grace's doing: a close
    // that waited for the job would hang until the test's timeout.
    await workers.close(500);
    // It gave the job its grace first (a lower bound: load only makes it later).
    expect(Date.now() - closing).toBeGreaterThanOrEqual(495);
    // Unfinished, and no longer held by a live worker once its lock lapses.
    expect(await stateOf(prefix, id)).toBe('active');
    release();
    await queues.close();
  });
});
