import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../log.js';
import { isRedisUnreachable, type RedisClient } from './redis.js';

/**
 * One lease on one Redis key that several processes compete for, so exactly one of them does a job
 * that must not run twice at once: Telegram answers 409 Conflict to every getUpdates but one, so only
 * the holder polls. Every script touches that single key, so it works on one server and on a Redis
 * Cluster alike.
 */
export interface PollLease {
  /** Who this process is in the key: hostname, pid and a random part, unique per process. */
  readonly holder: string;
  readonly key: string;
  /**
   * Competes for the lease until `stop`, without waiting for it: `work.begin` runs each time the lease
   * is taken, `work.end` each time it is lost. Call once.
   */
  start(work: LeaseWork): void;
  /**
   * Stops competing. If held, `work.end('released')` runs first, then the key is deleted (only if it
   * is still ours) so another process takes over at once instead of after the TTL. Resolves true when
   * this process held the lease and deleted it.
   */
  stop(): Promise<boolean>;
}

export type LeaseEnd = 'taken' | 'expired' | 'released';

export interface LeaseWork {
  /** The lease is ours: start the work. */
  begin(): void;
  /**
   * The lease is no longer ours, or is about to be released: stop the work at once; the lease waits
   * for this before it is released or taken again. `taken`: a renewal found another holder;
   * `expired`: Redis did not confirm a renewal for a whole TTL, so another process may hold it by now.
   */
  end(why: LeaseEnd): Promise<void>;
  /** Another process holds the lease: called once each time this one starts waiting for it. */
  waiting?(holder: string): void;
}

export interface PollLeaseOptions {
  key: string;
  /** How long the lease outlives its holder's last renewal. */
  ttlMs?: number;
  /** How often the holder renews; a third of the TTL leaves two attempts before it runs out. */
  renewMs?: number;
  log: Logger;
  holder?: string;
}

export const defaultPollLeaseMs = 30_000;

/** The key of the lease on Telegram polling, one per Redis prefix (one bot token per deployment). */
export const telegramPollerKey = (prefix: string): string => `${prefix}:telegram:poller`;

export function uniqueHolder(): string {
  return `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
}

// Takes a free key; a key that still names this process (a renewal Redis applied after this side gave
// up on it, or a restarted Redis that kept it) is this process's already. Otherwise it says who holds
// the key and for how much longer, so a waiter can try again right when the lease runs out.
const acquireScript = `
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1, ARGV[1], 0} end
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, current, 0}
end
return {0, current or '', redis.call('PTTL', KEYS[1])}
`;

const renewScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`;

const releaseScript = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

/** A waiter asks again at least this often, so a released lease is taken over within about a second. */
const maxWaitMs = 1000;

// biome-ignore lint/complexity/noExcessiveLinesPerFunction: a factory whose closure holds the lease's state for its competing loop and its short start/stop
export function createPollLease(redis: RedisClient, options: PollLeaseOptions): PollLease {
  const { key, log } = options;
  const ttlMs = Math.max(1, Math.round(options.ttlMs ?? defaultPollLeaseMs));
  const renewMs = Math.max(1, Math.round(options.renewMs ?? ttlMs / 3));
  const retryMs = Math.min(renewMs, maxWaitMs);
  const holder = options.holder ?? uniqueHolder();

  let work: LeaseWork | undefined;
  let loop: Promise<void> | undefined;
  let stopping = false;
  let held = false;
  let expiry: NodeJS.Timeout | undefined;
  // begin and end never overlap: the next one waits for the last to finish.
  let transitions = Promise.resolve();
  let wake: () => void = () => {};
  let failing = false;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (stopping) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = () => {};
        resolve();
      }
      wake = done;
    });

  const transition = (step: () => void | Promise<void>) => {
    transitions = transitions
      .then(step)
      .catch((err: unknown) => log.error({ err, lease: key }, 'lease work failed'));
    return transitions;
  };

  const lose = (why: LeaseEnd) => {
    if (!held) return transitions;
    held = false;
    clearTimeout(expiry);
    const w = work;
    return transition(() => w?.end(why));
  };

  /**
   * The lease is good until `sentAt + ttlMs`, measured from before the command left (Redis started its
   * TTL later), on this process's monotonic clock. If no renewal succeeds by then, the work stops: the
   * key may have expired and another process may hold it.
   */
  const holdUntil = (sentAt: number) => {
    clearTimeout(expiry);
    expiry = setTimeout(() => void lose('expired'), Math.max(0, sentAt + ttlMs - performance.now()));
  };

  /** A failed call is logged once per outage, not once per attempt: waiters keep trying every second. */
  const failed = (err: unknown) => {
    const message = err instanceof Error ? err.message : String(err);
    if (failing) {
      log.debug({ lease: key, err: message }, 'lease: Redis still failing');
      return;
    }
    failing = true;
    if (isRedisUnreachable(err))
      log.warn({ lease: key, err: message }, 'lease: Redis unreachable; trying again');
    else log.error({ lease: key, err: message }, 'lease: Redis refused; trying again');
  };
  const answered = () => {
    if (failing) log.info({ lease: key }, 'lease: Redis answers again');
    failing = false;
  };

  async function compete(w: LeaseWork): Promise<void> {
    let waitingFor: string | undefined;
    while (!stopping) {
      const sentAt = performance.now();
      if (!held) {
        let reply: [number, string, number];
        try {
          reply = (await redis.eval(acquireScript, 1, key, holder, ttlMs)) as [number, string, number];
          answered();
        } catch (err) {
          failed(err);
          await sleep(retryMs);
          continue;
        }
        const [won, current, pttl] = reply;
        if (won === 1) {
          // The last holder's end (this process's, after an expiry) finishes before work begins again.
          await transitions;
          if (stopping) break;
          held = true;
          waitingFor = undefined;
          holdUntil(sentAt);
          await transition(() => w.begin());
          await sleep(renewMs);
          continue;
        }
        if (waitingFor !== current) {
          waitingFor = current;
          w.waiting?.(current);
        }
        // Right after the holder's lease runs out, or sooner; a key without a TTL is asked about again.
        await sleep(pttl > 0 ? Math.min(retryMs, pttl + 5) : retryMs);
        continue;
      }
      let renewed: number;
      try {
        renewed = Number(await redis.eval(renewScript, 1, key, holder, ttlMs));
        answered();
      } catch (err) {
        // Still ours until the expiry timer says otherwise; try again sooner than a full period.
        failed(err);
        await sleep(retryMs);
        continue;
      }
      // The expiry timer fired while Redis was answering: the work has stopped, start over.
      if (!held) continue;
      if (renewed === 1) {
        holdUntil(sentAt);
        await sleep(renewMs);
        continue;
      }
      // Another process has the key (or it expired and vanished): stop at once, then wait like anyone.
      await lose('taken');
    }
  }

  return {
    holder,
    key,
    start(w) {
      if (work) throw new Error('a lease is started once');
      work = w;
      loop = compete(w);
    },
    async stop() {
      if (!work) return false;
      stopping = true;
      wake();
      await loop;
      const wasHeld = held;
      await lose('released');
      await transitions;
      try {
        const deleted = Number(await redis.eval(releaseScript, 1, key, holder));
        return wasHeld && deleted === 1;
      } catch (err) {
        log.warn(
          { lease: key, err: err instanceof Error ? err.message : String(err), ttlMs },
          'lease not released: Redis did not answer; another process takes over when it expires',
        );
        return false;
      }
    },
  };
}
