import { Cluster, Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it, onTestFailed } from 'vitest';
import {
  createPollLease,
  type LeaseEnd,
  type PollLease,
  telegramPollerKey,
} from '../../src/store/poll-lease.js';
import { type RedisClient, redisOptions } from '../../src/store/redis.js';
import { awsEnv } from '../peers/aws-account.js';
import { startOutageProxy } from '../peers/outage-proxy.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../peers/redis.js';
import { startRedisCluster } from '../peers/redis-cluster.js';
import { type FakeSlack, startFakeSlack } from '../peers/slack-api.js';
import { sendSlashCommand, typedCommand } from '../peers/slack-signer.js';
import { type FakeTelegram, startFakeTelegram } from '../peers/telegram-api.js';
import {
  type FleetbotProcess,
  type LogEntry,
  logEntries,
  startFleetbotProcess,
  waitForLog,
} from '../support/fleetbot-process.js';
import { capturedLogger } from '../support/quiet-log.js';

const redis = testRedis();
const prefix = uniquePrefix('poll-lease');
const key = telegramPollerKey(prefix);
let opened: { stop(): Promise<unknown> }[] = [];

afterAll(async () => {
  await dropPrefix(redis, prefix);
  await redis.quit();
});

/** What every lease in a test did, in the order it happened: `A begin`, `B waiting A`, `A end taken`. */
function timeline() {
  const events: string[] = [];
  const names = new Map<string, string>();
  const start = (name: string, lease: PollLease, end?: (why: LeaseEnd) => Promise<void>) => {
    names.set(lease.holder, name);
    opened.push(lease);
    lease.start({
      begin: () => events.push(`${name} begin`),
      async end(why) {
        await end?.(why);
        events.push(`${name} end ${why}`);
      },
      waiting: (holder) => events.push(`${name} waiting ${names.get(holder) ?? holder}`),
    });
    return lease;
  };
  return { events, start };
}

const leaseOn = (client: RedisClient, ttlMs: number, log = capturedLogger().log) =>
  createPollLease(client, { key, ttlMs, log });

const messages = (lines: string[], msg: string, level?: number) =>
  lines
    .map((l) => JSON.parse(l) as LogEntry)
    .filter((e) => e.msg === msg && (level === undefined || e.level === level));

/** A bot process's request connection (fails fast while Redis is away), through a proxy that can cut it. */
async function throughProxy(port: number): Promise<Redis> {
  const client = new Redis(`redis://127.0.0.1:${port}`, {
    ...redisOptions('requests'),
    retryStrategy: () => 100,
  });
  client.on('error', () => {});
  // As fleetbot does at start: the lease is only handed a connection that answered.
  await new Promise((resolve) => client.once('ready', resolve));
  return client;
}

describe('the poll lease, against a real Redis', () => {
  afterEach(async () => {
    for (const lease of opened) await lease.stop();
    opened = [];
    await redis.del(key);
  });

  it('when the key is free, then the lease is taken with its TTL; on stop the work ends while the key is still ours, then the key is deleted', async () => {
    const { events, start } = timeline();
    let keyWhenEnding: string | null = 'unread';
    const a = start('A', leaseOn(redis, 30_000), async () => {
      keyWhenEnding = await redis.get(key);
    });
    await expect.poll(() => events, { timeout: 30_000 }).toEqual(['A begin']);
    expect(await redis.get(key)).toBe(a.holder);
    const pttl = await redis.pttl(key);
    expect(pttl).toBeGreaterThan(0);
    expect(pttl).toBeLessThanOrEqual(30_000);

    expect(await a.stop()).toBe(true);
    expect(events).toEqual(['A begin', 'A end released']);
    expect(keyWhenEnding).toBe(a.holder);
    expect(await redis.exists(key)).toBe(0);
  });

  it('when two processes compete, then exactly one begins and the other waits naming it; when the holder stops, the other takes over from its release, long before the TTL', async () => {
    const { events, start } = timeline();
    const leases = { A: start('A', leaseOn(redis, 120_000)), B: start('B', leaseOn(redis, 120_000)) };
    await expect
      .poll(() => events.filter((e) => e.endsWith('begin') || e.includes('waiting')).length, {
        timeout: 30_000,
      })
      .toBe(2);
    const first = events.find((e) => e.endsWith('begin'))?.slice(0, 1) as 'A' | 'B';
    const second = first === 'A' ? 'B' : 'A';
    expect([...events].sort()).toEqual([`${first} begin`, `${second} waiting ${first}`].sort());
    expect(await redis.get(key)).toBe(leases[first].holder);

    const expiresAt = Date.now() + (await redis.pttl(key));
    expect(await leases[first].stop()).toBe(true);
    await expect.poll(() => events, { timeout: 30_000 }).toContain(`${second} begin`);
    const tookOverAt = Date.now();
    expect(events.slice(2)).toEqual([`${first} end released`, `${second} begin`]);
    // The bound is the feature: a released lease is taken over at once, not when its 120 s TTL runs out
    // (a busy machine costs seconds here, far inside that margin).
    expect(tookOverAt).toBeLessThan(expiresAt);
    expect(await redis.get(key)).toBe(leases[second].holder);
  });

  it('when the holder keeps running, then it renews the key past its TTL again and again and its work never ends', async () => {
    const { events, start } = timeline();
    const a = start('A', leaseOn(redis, 2000));
    await expect.poll(() => events, { timeout: 30_000 }).toEqual(['A begin']);
    const started = Date.now();
    let renewals = 0;
    let last = Number.POSITIVE_INFINITY;
    // A renewal shows as the key's remaining time going up again; each comes a third of the TTL apart.
    await expect
      .poll(
        async () => {
          const pttl = await redis.pttl(key);
          if (pttl > last) renewals++;
          last = pttl;
          return renewals >= 4 && Date.now() - started > 4000;
        },
        { timeout: 60_000, interval: 50 },
      )
      .toBe(true);
    expect(await redis.get(key)).toBe(a.holder);
    expect(events).toEqual(['A begin']);
  });

  it('when another holder took the key, then the next renewal stops the work at once and the lease waits for that holder, never taking the key back', async () => {
    const { events, start } = timeline();
    const a = start('A', leaseOn(redis, 3000));
    await expect.poll(() => events, { timeout: 30_000 }).toEqual(['A begin']);
    await redis.set(key, 'intruder', 'PX', 120_000);
    await expect
      .poll(() => events, { timeout: 30_000 })
      .toEqual(['A begin', 'A end taken', 'A waiting intruder']);
    expect(await redis.get(key)).toBe('intruder');
    // Stopping releases only a key that is still ours.
    expect(await a.stop()).toBe(false);
    expect(await redis.get(key)).toBe('intruder');
  });

  it('when Redis stops answering the holder for a whole TTL, then its work ends before another process can take the lease, and it logs the outage once', async () => {
    const proxy = await startOutageProxy(Number(new URL(testRedisUrl).port || 6379));
    const cut = await throughProxy(proxy.port);
    const captured = capturedLogger();
    try {
      const { events, start } = timeline();
      start('A', leaseOn(cut, 2000, captured.log));
      await expect.poll(() => events, { timeout: 30_000 }).toEqual(['A begin']);
      start('B', leaseOn(redis, 2000));
      await expect.poll(() => events, { timeout: 30_000 }).toEqual(['A begin', 'B waiting A']);

      await proxy.set('refused');
      await expect.poll(() => events, { timeout: 30_000 }).toContain('B begin');
      // Never two holders: A stopped working before B began.
      expect(events).toEqual(['A begin', 'B waiting A', 'A end expired', 'B begin']);

      await proxy.set('up');
      await expect.poll(() => events, { timeout: 30_000 }).toContain('A waiting B');
      expect(events.filter((e) => e.endsWith('begin'))).toEqual(['A begin', 'B begin']);
      expect(messages(captured.lines, 'lease: Redis unreachable; trying again')).toHaveLength(1);
      expect(messages(captured.lines, 'lease: Redis answers again')).toHaveLength(1);
    } finally {
      for (const lease of opened) await lease.stop();
      opened = [];
      cut.disconnect();
      await proxy.close();
    }
  });

  it('when Redis is unreachable while waiting, then the lease keeps trying, logs it once, and is taken once Redis answers', async () => {
    const proxy = await startOutageProxy(Number(new URL(testRedisUrl).port || 6379));
    const cut = await throughProxy(proxy.port);
    await proxy.set('refused');
    const captured = capturedLogger();
    try {
      const { events, start } = timeline();
      start('A', leaseOn(cut, 1500, captured.log));
      // Several attempts, however long they take to happen.
      await expect
        .poll(() => messages(captured.lines, 'lease: Redis still failing').length, { timeout: 30_000 })
        .toBeGreaterThanOrEqual(3);
      expect(events).toEqual([]);
      await proxy.set('up');
      await expect.poll(() => events, { timeout: 30_000 }).toEqual(['A begin']);
      expect(messages(captured.lines, 'lease: Redis unreachable; trying again', 40)).toHaveLength(1);
    } finally {
      for (const lease of opened) await lease.stop();
      opened = [];
      cut.disconnect();
      await proxy.close();
    }
  });
});

describe('the poll lease, on a Redis Cluster', () => {
  let cluster: Awaited<ReturnType<typeof startRedisCluster>>;
  let client: Cluster;
  beforeAll(async () => {
    cluster = await startRedisCluster();
    client = new Cluster(cluster.ports.map((port) => ({ host: '127.0.0.1', port })));
  });
  afterAll(async () => {
    for (const lease of opened) await lease.stop();
    opened = [];
    await client?.quit();
    await cluster?.stop();
  });

  it('when two processes compete through the cluster, then one holds the lease and the other takes over when it stops', async () => {
    const { events, start } = timeline();
    const clusterKey = telegramPollerKey('{fleetbot-cluster}');
    const on = () => createPollLease(client, { key: clusterKey, ttlMs: 60_000, log: capturedLogger().log });
    const a = start('A', on());
    await expect.poll(() => events, { timeout: 30_000 }).toEqual(['A begin']);
    const b = start('B', on());
    await expect.poll(() => events, { timeout: 30_000 }).toEqual(['A begin', 'B waiting A']);
    expect(await client.get(clusterKey)).toBe(a.holder);
    expect(await a.stop()).toBe(true);
    await expect
      .poll(() => events, { timeout: 30_000 })
      .toEqual(['A begin', 'B waiting A', 'A end released', 'B begin']);
    expect(await b.stop()).toBe(true);
    expect(await client.exists(clusterKey)).toBe(0);
  });
});

const botToken = `7000000077:${'L'.repeat(35)}`;
const signingSecret = 'poll-lease-signing-secret';
const fleetPrefix = uniquePrefix('poll-lease-fleet');

/**
 * Real fleetbot bot processes, as an operator runs several of them in polling mode on one Redis and one
 * bot token. Telegram is the fake Bot API, which answers 409 Conflict to a getUpdates that another one
 * overtook, as Telegram does; Slack is the fake Web API.
 */
describe('several fleetbot bot processes in polling mode', () => {
  let telegram: FakeTelegram;
  let slack: FakeSlack;
  const processes: FleetbotProcess[] = [];
  const killAll = () => {
    for (const p of processes)
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  };

  beforeAll(async () => {
    telegram = await startFakeTelegram();
    telegram.addBot(botToken, { username: 'fleet_lease_bot' });
    slack = await startFakeSlack();
    process.once('exit', killAll);
  });
  afterAll(async () => {
    killAll();
    await Promise.all(processes.map((p) => p.exit));
    process.off('exit', killAll);
    await telegram?.close();
    await slack?.close();
    await dropPrefix(redis, fleetPrefix);
  });

  const startBot = (leaseSeconds: number) => {
    const p = startFleetbotProcess(
      {
        ...awsEnv(inject('motoUrl')),
        REDIS_URL: testRedisUrl,
        REDIS_PREFIX: fleetPrefix,
        TELEGRAM_BOT_TOKEN: botToken,
        TELEGRAM_API_ROOT: telegram.apiRoot,
        TELEGRAM_POLL_LEASE_SECONDS: String(leaseSeconds),
        SLACK_BOT_TOKEN: 'xoxb-poll-lease',
        SLACK_SIGNING_SECRET: signingSecret,
        SLACK_API_URL: slack.apiUrl,
        SLACK_LISTEN: '127.0.0.1:0',
        LOG_LEVEL: 'info',
      },
      ['--role', 'bot'],
    );
    processes.push(p);
    return p;
  };
  // Starting takes seconds (tsx compiles first), far more on a busy machine: that is not the point.
  const started = (p: FleetbotProcess) => waitForLog(p, (e) => e.msg === 'fleetbot started', 120_000);
  const logged = (p: FleetbotProcess, msg: string) => logEntries(p).filter((e) => e.msg === msg);
  const holderOf = (p: FleetbotProcess) => {
    const entry = logEntries(p).find((e) => typeof e.holder === 'string');
    return String(entry?.holder);
  };

  /** A user writes /whoami; resolves once fleetbot answered in that chat. */
  const whoami = async (userId: number) => {
    telegram.sendUserMessage(botToken, { userId, text: '/whoami', firstName: 'Lea' });
    await telegram.waitForMessage(botToken, userId, `You are Telegram user ${userId}`, 60_000);
  };
  const answers = (userId: number) =>
    telegram.chat(botToken, userId).sent.filter((m) => m.text?.startsWith('You are Telegram user')).length;

  it('when three processes share one bot, then one polls at a time, the others serve Slack and wait, a stopped poller hands over at once and a killed one after its lease, and every message is answered once', async () => {
    onTestFailed(() => {
      for (const [i, p] of processes.entries())
        console.info(
          `process ${i} stdout (tail):\n${p.out().slice(-4000)}\nstderr:\n${p.err().slice(-2000)}`,
        );
    });
    // The first poller's lease is long, so a takeover that happens soon after it stops can only come
    // from its release; the later ones are short, so a killed poller is replaced within the test.
    const first = startBot(120);
    await started(first);
    const polling = await waitForLog(first, (e) => e.msg === 'telegram polling', 60_000);
    const firstHolder = String(polling.holder);
    expect(await redis.get(telegramPollerKey(fleetPrefix))).toBe(firstHolder);

    const others = [startBot(5), startBot(5)];
    const startedOthers = await Promise.all(others.map(started));
    for (const p of others)
      await waitForLog(
        p,
        (e) => e.msg === 'telegram polling held by another process; waiting' && e.poller === firstHolder,
        60_000,
      );

    // A waiting process serves Slack meanwhile.
    const slackPort = (startedOthers[0]?.ports as { slack?: number } | undefined)?.slack;
    expect(slackPort).toBeGreaterThan(0);
    const ack = await sendSlashCommand(
      `http://127.0.0.1:${slackPort}/slack/events`,
      signingSecret,
      typedCommand('/fleetbot whoami', {
        user: 'ULEASE',
        channel: 'CLEASE',
        responseUrl: slack.responseUrl(),
      }),
    );
    expect(ack.status).toBe(200);
    await slack.waitFor(
      (c) =>
        c.method === 'chat.postEphemeral' && String(c.params.text).startsWith('You are Slack user ULEASE'),
      60_000,
    );

    await whoami(501);
    for (const p of others) expect(logged(p, 'telegram polling')).toEqual([]);

    // SIGTERM: the poller stops polling, releases the lease, and one of the others takes over from it.
    const expiresAt = Date.now() + (await redis.pttl(telegramPollerKey(fleetPrefix)));
    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(0);
    const takeover = (p: FleetbotProcess, from: string) =>
      logged(p, 'telegram polling taken over').find((e) => e.from === from);
    await expect
      .poll(() => others.filter((p) => takeover(p, firstHolder)).length, { timeout: 60_000 })
      .toBe(1);
    const second = others.find((p) => takeover(p, firstHolder)) as FleetbotProcess;
    const third = others.find((p) => p !== second) as FleetbotProcess;
    const released = logged(first, 'telegram polling stopped; lease released');
    expect(released.map((e) => e.holder)).toEqual([firstHolder]);
    const tookOver = takeover(second, firstHolder) as LogEntry;
    // Order first (released, then taken over), then the feature itself: the takeover came from the
    // release, before the poller's 120 s lease would have expired (a busy machine costs seconds here).
    expect(Number(released[0]?.time)).toBeLessThanOrEqual(Number(tookOver.time));
    expect(Number(tookOver.time)).toBeLessThan(expiresAt);
    const secondHolder = holderOf(second);
    expect(tookOver.holder).toBe(secondHolder);
    await waitForLog(second, (e) => e.msg === 'telegram polling', 60_000);
    await whoami(502);

    // SIGKILL: nothing is released; the last process takes over once the killed poller's lease ran out.
    expect(await redis.get(telegramPollerKey(fleetPrefix))).toBe(secondHolder);
    second.child.kill('SIGKILL');
    expect(await second.exit).toBeNull();
    await expect.poll(() => takeover(third, secondHolder), { timeout: 60_000 }).toBeDefined();
    expect(logged(second, 'telegram polling stopped; lease released')).toEqual([]);
    await whoami(503);

    third.child.kill('SIGTERM');
    expect(await third.exit).toBe(0);

    // Everything is stopped, so the counts are final.
    for (const userId of [501, 502, 503]) expect(answers(userId), `answers to ${userId}`).toBe(1);
    expect(processes.map((p) => logged(p, 'telegram polling').length)).toEqual([1, 1, 1]);
    const polls = telegram.calls(botToken, 'getUpdates').sort((a, b) => a.at - b.at);
    expect(polls.length).toBeGreaterThan(3);
    expect(polls.filter((c) => c.response?.ok === false)).toEqual([]);
    // One long poll at a time: each began after the one before it had been answered.
    for (const [i, call] of polls.entries()) {
      const before = polls[i - 1];
      if (before) expect(call.at).toBeGreaterThanOrEqual(Number(before.finishedAt));
    }
  }, 400_000);
});
