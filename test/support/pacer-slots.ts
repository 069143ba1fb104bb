import { expect } from 'vitest';

/**
 * The slots the Redis pacer handed out for `key`, in time order, read from captured JSON log lines
 * (`createPacer` logs `{ pacer, slotAt }` at debug when it has a logger).
 */
export function pacerSlots(lines: readonly string[], key: string): number[] {
  return lines
    .flatMap((chunk) => chunk.split('\n'))
    .filter((line) => line.startsWith('{') && line.includes('"pacer"'))
    .map((line) => JSON.parse(line) as { pacer?: string; slotAt?: number })
    .filter((entry) => entry.pacer === key && typeof entry.slotAt === 'number')
    .map((entry) => entry.slotAt as number)
    .sort((a, b) => a - b);
}

/**
 * Redis TIME is floored to the millisecond and timers count whole milliseconds, so a call can be
 * recorded up to a millisecond or two before the slot it waited for; a call that skipped its wait
 * is early by the whole backlog ahead of it.
 */
const clockGrainMs = 5;

/**
 * Asserts that the calls a peer saw kept to what the pacer scheduled, which holds however loaded the
 * machine is: one slot per call, slots at least 1000/perSecond ms apart, and no call before its slot
 * (the k-th arrival is not earlier than the k-th slot). Delays only push arrivals later, never closer
 * together than the slots allow, so these cannot fail for a slow machine, only for a fast pacer.
 */
export function expectPaced(arrivals: readonly number[], slots: readonly number[], perSecond: number): void {
  expect(slots, 'one pacer slot per call').toHaveLength(arrivals.length);
  const gaps = slots.slice(1).map((slot, i) => slot - (slots[i] ?? 0));
  const tooClose = gaps.filter((gap) => gap < 1000 / perSecond);
  expect(tooClose, `slot gaps below ${1000 / perSecond} ms`).toEqual([]);
  const sorted = [...arrivals].sort((a, b) => a - b);
  const early = sorted
    .map((at, k) => ({ k, earlyByMs: (slots[k] ?? 0) - at }))
    .filter((c) => c.earlyByMs > clockGrainMs);
  expect(early, 'calls that arrived before their slot').toEqual([]);
}
