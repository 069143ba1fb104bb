/**
 * When a running command is worth reading again, from how long this rollout's instances have taken
 * so far. A read costs one SSM call out of a budget every worker shares, so a command is read when
 * enough of its instances are expected to have finished to free slots worth a send, and not at a
 * fixed interval that is too late for fast deploys and too often for slow ones.
 */
export interface CompletionForecast {
  /**
   * An instance finished somewhere between `afterMs` and `byMs` after its command was sent (a poll
   * sees it finished at `byMs` and still running at its previous read, `afterMs`).
   */
  observe(afterMs: number, byMs: number): void;
  /** When to read a command again (epoch ms). */
  nextReadAt(command: ReadState): number;
  readonly samples: number;
}

export interface ReadState {
  /** When the command was sent, and last read (the send, before any read). */
  sentAt: number;
  lastReadAt: number;
  /** How many of its instances had not finished at that read. */
  open: number;
  /** How many finished instances make a read worth its call. */
  worthReading: number;
}

export interface ForecastLimits {
  /** Never read one command more often than this. */
  minGapMs: number;
  /** Never leave one command unread longer than this (the configured poll interval). */
  maxGapMs: number;
}

export function createCompletionForecast(limits: ForecastLimits): CompletionForecast {
  // Durations in ms, ascending: the empirical distribution of this rollout's instance times.
  const sorted: number[] = [];
  const clamp = (state: ReadState, at: number) =>
    Math.min(state.lastReadAt + limits.maxGapMs, Math.max(state.lastReadAt + limits.minGapMs, at));
  return {
    get samples() {
      return sorted.length;
    },
    observe(afterMs, byMs) {
      // The middle of the interval it finished in: reads placed where the last ones were would
      // otherwise only ever confirm their own times.
      const duration = Math.max(0, (Math.max(0, afterMs) + byMs) / 2);
      sorted.splice(upperBound(sorted, duration), 0, duration);
    },
    nextReadAt(state) {
      const elapsed = state.lastReadAt - state.sentAt;
      const n = sorted.length;
      // Before anything is known, and for stragglers slower than all seen: back off geometrically.
      const backoff = () => clamp(state, state.lastReadAt + Math.max(elapsed, limits.minGapMs));
      if (n === 0 || state.open <= 0) return backoff();
      const doneBefore = upperBound(sorted, elapsed) / n;
      // Expected finishers since the last read: open × (F(t) − F0) / (1 − F0). Half the open ones
      // when fewer than a worthwhile number remain, so the last few are not waited out to the slowest.
      const wanted = Math.min(state.worthReading, state.open / 2);
      const quantile = doneBefore + (wanted * (1 - doneBefore)) / state.open;
      const index = Math.ceil(quantile * n) - 1;
      const duration = sorted[Math.max(0, index)];
      if (index >= n || duration === undefined || duration <= elapsed) return backoff();
      return clamp(state, state.sentAt + duration);
    },
  };
}

/** The number of values <= x in ascending `values`. */
function upperBound(values: readonly number[], x: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((values[mid] ?? 0) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
