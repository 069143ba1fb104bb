/** Pure arithmetic over what a scenario recorded; nothing here talks to a peer. */

/** The most events in any half-open window [t, t + windowMs), and where that window starts. */
export function peakInWindow(
  times: readonly number[],
  windowMs: number,
): { count: number; startsAt?: number } {
  const sorted = [...times].sort((a, b) => a - b);
  let best = { count: 0, startsAt: undefined as number | undefined };
  let end = 0;
  for (let start = 0; start < sorted.length; start++) {
    const from = sorted[start] ?? 0;
    while (end < sorted.length && (sorted[end] ?? 0) < from + windowMs) end++;
    if (end - start > best.count) best = { count: end - start, startsAt: from };
  }
  return best;
}

/** The smallest gap between two consecutive events (Infinity for fewer than two). */
export function minGap(times: readonly number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let gap = Number.POSITIVE_INFINITY;
  for (let i = 1; i < sorted.length; i++) gap = Math.min(gap, (sorted[i] ?? 0) - (sorted[i - 1] ?? 0));
  return gap;
}

/** The most half-open intervals [start, end) open at one instant, and that instant. */
export function maxOverlap(intervals: readonly { start: number; end: number }[]): {
  count: number;
  at?: number;
} {
  // At equal times an end sorts before a start: an instance finishing as another starts is not both.
  const events = intervals
    .flatMap((i) => [
      { at: i.start, delta: 1 },
      { at: i.end, delta: -1 },
    ])
    .sort((a, b) => a.at - b.at || a.delta - b.delta);
  let open = 0;
  let best = { count: 0, at: undefined as number | undefined };
  for (const e of events) {
    open += e.delta;
    if (open > best.count) best = { count: open, at: e.at };
  }
  return best;
}

export function countBy<T>(items: readonly T[], key: (item: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1;
  return out;
}

/** Deterministic [0, 1) draws from a string, so every run scripts the same instance the same way. */
export function seededDraws(seed: string): () => number {
  let h = 2166136261;
  for (let i = 0; i < seed.length; i++) h = Math.imul(h ^ seed.charCodeAt(i), 16777619);
  let state = h >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Samples this process's RSS until stopped; the kernel's own high-water mark covers the gaps. */
export function rssSampler(everyMs = 250): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, everyMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss());
    },
  };
}

/** Peak RSS of another process (VmHWM), in bytes; undefined where /proc cannot tell. */
export async function peakRssOf(pid: number): Promise<number | undefined> {
  try {
    const { readFile } = await import('node:fs/promises');
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = /^VmHWM:\s+(\d+)\s+kB/m.exec(status)?.[1];
    return kb ? Number(kb) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export const mib = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;
export const seconds = (ms: number) => Math.round(ms / 100) / 10;
export const round = (n: number, digits = 3) => Math.round(n * 10 ** digits) / 10 ** digits;

/** Nearest-rank percentile (p99 of 200 samples is the 2nd largest); undefined for no values. */
export function percentile(values: readonly number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/** A process's user + system CPU time so far, in ms (clock ticks of 10 ms), from /proc; undefined where it cannot tell. */
export async function cpuMsOf(pid: number | undefined): Promise<number | undefined> {
  if (!pid) return undefined;
  try {
    const { readFile } = await import('node:fs/promises');
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: utime, stime are 14th and 15th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}
