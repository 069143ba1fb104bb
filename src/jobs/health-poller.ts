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
  /**
   * Resolves once the instance's health satisfies `until` (at once if the latest tick, answered less
   * than an interval ago, saw it so); StageTimeout after `timeoutMs`.
   */
  waitUntil(
    instanceId: string,
    until: (health: InstanceHealth | undefined) => boolean,
    timeoutMs: number,
    onTrouble?: TroubleListener,
  ): Promise<InstanceHealth>;
  stop(): void;
}

/**
 * When the next tick starts while AWS answers: one interval after the previous one was planned, so
 * slow answers do not make ticks drift, or at once if a slow answer already took the tick past it.
 * A waiter waking a poller idle for longer than an interval (or a new one) gets an interval from now,
 * as its instance was usually just launched or started.
 */
function nextOnCadence(
  plannedAt: number | undefined,
  intervalMs: number,
  now: number,
  afterTick: boolean,
): number {
  const onCadence = plannedAt === undefined ? undefined : plannedAt + intervalMs;
  if (onCadence !== undefined && (afterTick || onCadence >= now)) return Math.max(now, onCadence);
  return now + intervalMs;
}

/**
 * One DescribeInstanceStatus per tick for every instance any job in this worker is waiting on,
 * instead of one waiter per instance: fifty provisions cost the Describe rate of one. While AWS
 * throttles or fails the poll, ticks back off (never past the next deadline) and waiters are told.
 *
 * Ticks keep a fixed cadence (each planned one interval after the previous one was planned, not after
 * it ended), so a slow answer does not push every later tick back; two ticks never start less than
 * an interval apart. What the latest tick saw is kept for one interval: a wait for a health that
 * tick already saw (a provision's "checks ok" seen on the tick that saw it "running") resolves at
 * once instead of costing a tick, as a waiter registered just before that tick would have.
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
  // When the current (or last) tick was planned to start, and whether its poll is still out.
  let plannedAt: number | undefined;
  let polling = false;
  // The health the latest answered tick saw, and when it was answered; emptied by a failed tick.
  let seen: { at: number; health: Map<string, InstanceHealth> } | undefined;

  const tick = async () => {
    timer = undefined;
    if (waiters.size === 0 || stopped) return;
    const ids = [...new Set([...waiters].map((w) => w.instanceId))];
    polling = true;
    try {
      const health = await fleet.health(ids);
      seen = { at: Date.now(), health };
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
      seen = undefined;
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
    } finally {
      polling = false;
    }
    const now = Date.now();
    for (const w of [...waiters]) {
      if (now >= w.deadline) {
        waiters.delete(w);
        w.reject(new StageTimeout(w.last, trouble && { trouble, waitedMs: now - troubleSince }));
      }
    }
    schedule(true);
  };
  /** `afterTick`: called as a tick ends, so the cadence goes on; otherwise a waiter woke the poller. */
  const schedule = (afterTick = false) => {
    // A tick whose poll is out schedules the next one as it ends, on the cadence.
    if (timer || polling || waiters.size === 0 || stopped) return;
    const now = Date.now();
    let at = nextOnCadence(plannedAt, intervalMs, now, afterTick);
    if (trouble) {
      // Back off while AWS fails the poll, but come back in time for the first deadline.
      const firstDeadline = Math.min(...[...waiters].map((w) => w.deadline));
      const backoff = backoffDelay(failedPolls - 1, awsBackoff, random);
      at = now + Math.max(intervalMs, Math.min(backoff, firstDeadline - now));
    }
    plannedAt = at;
    timer = setTimeout(() => void tick(), at - now);
  };

  /** What the latest tick saw of this instance, if that tick answered less than an interval ago. */
  const fresh = (instanceId: string): InstanceHealth | undefined =>
    seen && Date.now() - seen.at < intervalMs ? seen.health.get(instanceId) : undefined;

  return {
    waitUntil(instanceId, until, timeoutMs, onTrouble) {
      return new Promise<InstanceHealth>((resolve, reject) => {
        const known = fresh(instanceId);
        if (known && until(known)) {
          resolve(known);
          return;
        }
        waiters.add({
          instanceId,
          until,
          deadline: Date.now() + timeoutMs,
          last: known,
          onTrouble,
          resolve,
          reject,
        });
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
