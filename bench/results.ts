/** `bench/RESULTS.md`: one run of the bench, every target with its number and whether it was met. */
import { cpus } from 'node:os';
import { met, type ScenarioResult } from './scenario.js';

export type Outcome = { name: string; result: ScenarioResult } | { name: string; error: string };

const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('\n', ' ');

export function resultsMarkdown(outcomes: readonly Outcome[], totalMs: number): string {
  const cores = cpus();
  const lines = [
    '# Bench results',
    '',
    `The latest full run of \`npm run bench -- --results bench/RESULTS.md\`: ${new Date().toISOString()},`,
    `Node ${process.version}, ${cores.length} CPUs (${cores[0]?.model.trim() ?? 'unknown model'}), ${Math.round(totalMs / 1000)} s in all.`,
    'Each scenario also prints this table and one JSON line; `npm run bench -- --list` says what each one does.',
    '',
  ];
  for (const outcome of outcomes) {
    if ('error' in outcome) {
      lines.push(`## ${outcome.name}`, '', `Failed: ${cell(outcome.error)}`, '');
      continue;
    }
    const { result } = outcome;
    const missed = result.targets.filter((t) => !met(t)).length;
    lines.push(
      `## ${outcome.name}: ${missed === 0 ? 'every target met' : `${missed} target${missed > 1 ? 's' : ''} missed`}`,
      '',
      cell(result.title),
      '',
      '| target | value | limit | |',
      '| --- | ---: | --- | --- |',
      ...result.targets.map(
        (t) => `| ${cell(t.label)} | ${t.value} | ${t.op} ${t.limit} | ${met(t) ? 'met' : '**missed**'} |`,
      ),
      '',
      '| measured | |',
      '| --- | --- |',
      ...result.rows.map((r) => `| ${cell(r.label.trim())} | ${cell(r.value)} |`),
      '',
      ...result.notes.map((n) => `- ${cell(n)}`),
      '',
    );
  }
  return `${lines.join('\n').trimEnd()}\n`;
}
