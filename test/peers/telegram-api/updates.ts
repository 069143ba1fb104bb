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
 *
 * Every update ever pushed is remembered, so a test can `replay` one: the copy is handed out once more
 * with its own update_id whatever offset was confirmed, as Telegram does when it retries a webhook that
 * timed out or re-sends what a crashed bot never confirmed.
 */
export interface UpdateQueue {
  push(update: NewUpdate): Update;
  /** getUpdates offset semantics: positive drops lower ids, negative keeps only the last -offset. Replays stay. */
  confirm(offset: number): void;
  /** Replays and pending updates in update_id order, each id once. */
  take(limit: number): Update[];
  /** getUpdates answered with these: their replays are used up. */
  handedOut(updates: readonly Update[]): void;
  /** Removes one update (webhook delivery finished with it): its replay if it has one, else the update. */
  remove(updateId: number): void;
  /** Queues the update with this id for one more delivery; throws if no such update was ever pushed. */
  replay(updateId: number): Update;
  clear(): void;
  readonly size: number;
  waitForAny(timeoutMs: number, signal: AbortSignal): Promise<void>;
}

export function createUpdateQueue(firstId = 1): UpdateQueue {
  let updates: Update[] = [];
  let replays: Update[] = [];
  const history = new Map<number, Update>();
  let nextId = firstId;
  const waiters = new Set<() => void>();
  const wakeAll = () => {
    for (const wake of [...waiters]) wake();
  };
  function merged(): Update[] {
    if (replays.length === 0) return updates;
    const replayed = new Set(replays.map((u) => u.update_id));
    return [...replays, ...updates.filter((u) => !replayed.has(u.update_id))].sort(
      (a, b) => a.update_id - b.update_id,
    );
  }
  return {
    push(update) {
      const full = { ...update, update_id: nextId++ } as Update;
      updates.push(full);
      history.set(full.update_id, structuredClone(full));
      wakeAll();
      return full;
    },
    confirm(offset) {
      if (offset > 0) updates = updates.filter((u) => u.update_id >= offset);
      else if (offset < 0) updates = updates.slice(offset);
    },
    take(limit) {
      return merged().slice(0, limit);
    },
    handedOut(batch) {
      const ids = new Set(batch.map((u) => u.update_id));
      replays = replays.filter((u) => !ids.has(u.update_id));
    },
    remove(updateId) {
      const index = replays.findIndex((u) => u.update_id === updateId);
      if (index >= 0) replays.splice(index, 1);
      else updates = updates.filter((u) => u.update_id !== updateId);
    },
    replay(updateId) {
      const original = history.get(updateId);
      if (!original) throw new Error(`fake telegram: update ${updateId} was never created for this bot`);
      // A second replay before the first went out is the same redelivery, not another one.
      if (!replays.some((u) => u.update_id === updateId)) replays.push(structuredClone(original));
      wakeAll();
      return structuredClone(original);
    },
    clear() {
      updates = [];
      replays = [];
    },
    get size() {
      return merged().length;
    },
    waitForAny(timeoutMs, signal) {
      if (merged().length > 0 || signal.aborted) return Promise.resolve();
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
