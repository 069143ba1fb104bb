/** What every benchmark scenario hands back to `bench/run.ts`. */

export interface Row {
  label: string;
  value: string;
}

/** A gated number: the bench exits non-zero when any target is missed. */
export interface Target {
  label: string;
  value: number;
  limit: number;
  /** `<=` for budgets; `==` for things that must come out exactly (every instance served once). */
  op: '<=' | '==';
}

export interface ScenarioResult {
  scenario: string;
  title: string;
  rows: Row[];
  targets: Target[];
  notes: string[];
  /** Machine-readable figures, printed as one JSON line. */
  json: Record<string, unknown>;
}

export interface Scenario {
  name: string;
  description: string;
  /** Progress goes through `say` (stderr), so stdout carries only the table and the JSON line. */
  run(say: (line: string) => void): Promise<ScenarioResult>;
}

export function met(target: Target): boolean {
  return target.op === '<=' ? target.value <= target.limit : target.value === target.limit;
}

export function renderResult(result: ScenarioResult): string {
  const lines = [result.title, ''];
  const width = Math.max(
    ...result.rows.map((r) => r.label.length),
    ...result.targets.map((t) => t.label.length),
  );
  for (const row of result.rows) lines.push(`  ${row.label.padEnd(width)}  ${row.value}`);
  if (result.targets.length > 0) {
    lines.push('', '  targets');
    for (const t of result.targets)
      lines.push(
        `  ${t.label.padEnd(width)}  ${String(t.value).padStart(8)} ${t.op} ${String(t.limit).padEnd(8)} ${met(t) ? 'ok' : 'MISSED'}`,
      );
  }
  if (result.notes.length > 0) {
    lines.push('');
    for (const note of result.notes) lines.push(`  note: ${note}`);
  }
  return lines.join('\n');
}
