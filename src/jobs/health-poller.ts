import type { Fleet, InstanceHealth } from '../aws/fleet.js';
import type { Logger } from '../log.js';

export class StageTimeout extends Error {
  constructor(readonly last: InstanceHealth | undefined) {
    super('stage timed out');
    this.name = 'StageTimeout';
  }
}

interface Waiter {
  instanceId: string;
  until: (health: InstanceHealth | undefined) => boolean;
  deadline: number;
  last?: InstanceHealth;
  resolve: (health: InstanceHealth) => void;
  reject: (error: Error) => void;
}

export interface HealthPoller {
  /** Resolves once the instance's health satisfies `until`; StageTimeout after `timeoutMs`. */
  waitUntil(
    instanceId: string,
    until: (health: InstanceHealth | undefined) => boolean,
    timeoutMs: number,
  ): Promise<InstanceHealth>;
  stop(): void;
}

/**
 * One DescribeInstanceStatus per tick for every instance any job in this worker is waiting on,
 * instead of one waiter per instance: fifty provisions cost the Describe rate of one.
 */
export function createHealthPoller(fleet: Fleet, intervalMs: number, log: Logger): HealthPoller {
  const waiters = new Set<Waiter>();
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;

  const tick = async () => {
    timer = undefined;
    if (waiters.size === 0 || stopped) return;
    const ids = [...new Set([...waiters].map((w) => w.instanceId))];
    try {
      const health = await fleet.health(ids);
      for (const w of [...waiters]) {
        const h = health.get(w.instanceId);
        w.last = h ?? w.last;
        if (w.until(h) && h) {
          waiters.delete(w);
          w.resolve(h);
        }
      }
    } catch (err) {
      // Throttling or a blip: the next tick asks again; deadlines still apply.
      log.warn(
        { err: err instanceof Error ? err.name : String(err), instances: ids.length },
        'status poll failed',
      );
    }
    const now = Date.now();
    for (const w of [...waiters]) {
      if (now >= w.deadline) {
        waiters.delete(w);
        w.reject(new StageTimeout(w.last));
      }
    }
    schedule();
  };
  const schedule = () => {
    if (!timer && waiters.size > 0 && !stopped) timer = setTimeout(() => void tick(), intervalMs);
  };

  return {
    waitUntil(instanceId, until, timeoutMs) {
      return new Promise<InstanceHealth>((resolve, reject) => {
        waiters.add({ instanceId, until, deadline: Date.now() + timeoutMs, resolve, reject });
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
