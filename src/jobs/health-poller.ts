import { transientAwsError } from '../core/aws-errors.js';
import { type AwsTrouble, awsBackoff, backoffDelay } from '../core/aws-wait.js';
import type { Fleet, InstanceHealth } from '../core/ports/fleet.js';
import type { Logger } from '../log.js';

export class StageTimeout extends Error {
  constructor(
    readonly last: InstanceHealth | undefined,
    /** Set when the stage ran out while AWS kept failing the status poll: what it failed with, and for how long. */
    readonly trouble?: { trouble: AwsTrouble; waitedMs: number },
  ) {
    super('stage timed out');
    this.name = 'StageTimeout';
  }
}

/** Told on each poll that failed transiently (with the trouble) and once polls get through again. */
export type TroubleListener = (trouble: AwsTrouble | undefined) => void;

interface Waiter {
  instanceId: string;
  until: (health: InstanceHealth | undefined) => boolean;
  deadline: number;
  last?: InstanceHealth;
  onTrouble?: TroubleListener;
  resolve: (health: InstanceHealth) => void;
  reject: (error: Error) => void;
}

export interface HealthPoller {
  /** Resolves once the instance's health satisfies `until`; StageTimeout after `timeoutMs`. */
  waitUntil(
    instanceId: string,
    until: (health: InstanceHealth | undefined) => boolean,
    timeoutMs: number,
    onTrouble?: TroubleListener,
  ): Promise<InstanceHealth>;
  stop(): void;
}

/**
 * One DescribeInstanceStatus per tick for every instance any job in this worker is waiting on,
 * instead of one waiter per instance: fifty provisions cost the Describe rate of one. While AWS
 * throttles or fails the poll, ticks back off (never past the next deadline) and waiters are told.
 */
export function createHealthPoller(
  fleet: Fleet,
  intervalMs: number,
  log: Logger,
  options: { random?: () => number } = {},
): HealthPoller {
  const random = options.random ?? Math.random;
  const waiters = new Set<Waiter>();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let trouble: AwsTrouble | undefined;
  let troubleSince = 0;
  let failedPolls = 0;

  const tick = async () => {
    timer = undefined;
    if (waiters.size === 0 || stopped) return;
    const ids = [...new Set([...waiters].map((w) => w.instanceId))];
    try {
      const health = await fleet.health(ids);
      if (trouble) {
        log.info({ waitedMs: Date.now() - troubleSince }, 'status polls answered again');
        trouble = undefined;
        failedPolls = 0;
        for (const w of waiters) w.onTrouble?.(undefined);
      }
      for (const w of [...waiters]) {
        const h = health.get(w.instanceId);
        w.last = h ?? w.last;
        if (w.until(h) && h) {
          waiters.delete(w);
          w.resolve(h);
        }
      }
    } catch (err) {
      const transient = transientAwsError(err);
      log.warn(
        { err: err instanceof Error ? err.name : String(err), instances: ids.length },
        'status poll failed',
      );
      // Any other error is asked again on the next tick as before; deadlines still apply.
      if (transient) {
        if (!trouble) troubleSince = Date.now();
        trouble = transient;
        failedPolls++;
        for (const w of waiters) w.onTrouble?.(transient);
      }
    }
    const now = Date.now();
    for (const w of [...waiters]) {
      if (now >= w.deadline) {
        waiters.delete(w);
        w.reject(new StageTimeout(w.last, trouble && { trouble, waitedMs: now - troubleSince }));
      }
    }
    schedule();
  };
  const schedule = () => {
    if (timer || waiters.size === 0 || stopped) return;
    let delay = intervalMs;
    if (trouble) {
      // Back off while AWS fails the poll, but come back in time for the first deadline.
      const firstDeadline = Math.min(...[...waiters].map((w) => w.deadline));
      const backoff = backoffDelay(failedPolls - 1, awsBackoff, random);
      delay = Math.max(intervalMs, Math.min(backoff, firstDeadline - Date.now()));
    }
    timer = setTimeout(() => void tick(), delay);
  };

  return {
    waitUntil(instanceId, until, timeoutMs, onTrouble) {
      return new Promise<InstanceHealth>((resolve, reject) => {
        waiters.add({ instanceId, until, deadline: Date.now() + timeoutMs, onTrouble, resolve, reject });
        if (trouble) onTrouble?.(trouble);
        schedule();
      });
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      for (const w of waiters) w.reject(new Error('poller stopped'));
      waiters.clear();
    },
  };
}
