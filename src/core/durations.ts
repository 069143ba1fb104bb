const units: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `30m`, `12h`, `7d`; undefined for anything else. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,4})([mhd])$/.exec(text.trim().toLowerCase());
  if (!m?.[1] || !m[2]) return undefined;
  return Number(m[1]) * (units[m[2]] ?? 0);
}

export function formatUtc(date: Date): string {
  return `${date.toISOString().replace('T', ' ').slice(0, 16)} UTC`;
}

/** `2m14s`, `45s`, `1h03m`: how long something took, for people. */
export function formatElapsed(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}
