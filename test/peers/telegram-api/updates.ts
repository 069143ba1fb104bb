import type { Update } from 'grammy/types';

export type UpdateType = Exclude<keyof Update, 'update_id'>;
export type NewUpdate = Omit<Update, 'update_id'>;

/** Per the Bot API, an empty or never-given allowed_updates means "all but these". */
const notByDefault: readonly string[] = ['chat_member', 'message_reaction', 'message_reaction_count'];

export function updateTypeOf(update: NewUpdate): string | undefined {
  return Object.keys(update).find((key) => key !== 'update_id');
}

export function isAllowed(allowed: readonly string[] | undefined, type: string): boolean {
  return allowed && allowed.length > 0 ? allowed.includes(type) : !notByDefault.includes(type);
}

/**
 * The server-side update queue of one bot. Updates stay until confirmed by an offset above their id,
 * and a long poll parks on `waitForAny` instead of re-asking, which is what keeps polling cheap.
 */
export interface UpdateQueue {
  push(update: NewUpdate): Update;
  /** getUpdates offset semantics: positive drops lower ids, negative keeps only the last -offset. */
  confirm(offset: number): void;
  take(limit: number): Update[];
  /** Removes one update (webhook delivery finished with it), wherever it now sits. */
  remove(updateId: number): void;
  clear(): void;
  readonly size: number;
  waitForAny(timeoutMs: number, signal: AbortSignal): Promise<void>;
}

export function createUpdateQueue(firstId = 1): UpdateQueue {
  let updates: Update[] = [];
  let nextId = firstId;
  const waiters = new Set<() => void>();
  return {
    push(update) {
      const full = { ...update, update_id: nextId++ } as Update;
      updates.push(full);
      for (const wake of [...waiters]) wake();
      return full;
    },
    confirm(offset) {
      if (offset > 0) updates = updates.filter((u) => u.update_id >= offset);
      else if (offset < 0) updates = updates.slice(offset);
    },
    take(limit) {
      return updates.slice(0, limit);
    },
    remove(updateId) {
      updates = updates.filter((u) => u.update_id !== updateId);
    },
    clear() {
      updates = [];
    },
    get size() {
      return updates.length;
    },
    waitForAny(timeoutMs, signal) {
      if (updates.length > 0 || signal.aborted) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          waiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener('abort', done);
        waiters.add(done);
      });
    },
  };
}
