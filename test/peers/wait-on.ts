import type { EventEmitter } from 'node:events';

/** Where a fake announces new records (`events`) and how its close() rejects pending waits (`closers`). */
export interface Waiters {
  events: EventEmitter;
  closers: Set<(err: Error) => void>;
}

/**
 * Resolves with the first item of `list()` (past or future, announced as `event`) that matches,
 * rejects after timeoutMs with what was seen, or when the fake closes.
 */
export function waitOn<T>(
  waiters: Waiters,
  list: () => T[],
  event: string,
  predicate: (item: T) => boolean,
  timeoutMs: number,
  describe: () => string,
): Promise<T> {
  const { events, closers } = waiters;
  const hit = list().find(predicate);
  if (hit) return Promise.resolve(hit);
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      events.off(event, onItem);
      closers.delete(onClose);
    };
    const onItem = (item: T) => {
      try {
        if (!predicate(item)) return;
      } catch (err) {
        cleanup();
        reject(err);
        return;
      }
      cleanup();
      resolve(item);
    };
    const onClose = (err: Error) => {
      cleanup();
      reject(err);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`fake Slack: nothing matched within ${timeoutMs} ms; seen: ${describe()}`));
    }, timeoutMs);
    events.on(event, onItem);
    closers.add(onClose);
  });
}
