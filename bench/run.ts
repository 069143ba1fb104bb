/**
 * `npm run bench` runs every scenario; `npm run bench -- <name>…` runs some; `npm run bench -- --list`
 * lists them. Each prints a table and one JSON line on stdout (progress goes to stderr) and the
 * process exits 1 when any target is missed or a scenario fails, so the bench can gate a change.
 */
import { parseArgs } from 'node:util';
import { met, renderResult, type Scenario } from './scenario.js';

/** Loaded lazily, so `--list` is instant. */
const scenarios: { name: string; description: string; load: () => Promise<Scenario> }[] = [
  {
    name: 'rollout',
    description:
      'deploy to 1,000 (20%) and 10,000 (400 at once) instances with completion events and with adaptive polling, beside the ideal refill and SSM alone (about 5 min)',
    load: async () => (await import('./rollout.js')).rolloutBench,
  },
  {
    name: 'provision-200',
    description: '200 members /provision at once through the fake Bot API (about 2 min)',
    load: async () => (await import('./provision.js')).provision200,
  },
  {
    name: 'intake-50',
    description: '50 members paste both secrets at once, beside a bare grammY bot (under a minute)',
    load: async () => (await import('./intake.js')).intake50,
  },
  {
    name: 'ack',
    description: 'signed slash commands at 20 and 100 req/s against fleetbot and a bare Bolt app (about 1 min)',
    load: async () => (await import('./ack.js')).ack,
  },
  {
    name: 'fleet-burst',
    description: '60 concurrent /fleet from admins: AWS calls and answer times (under a minute)',
    load: async () => (await import('./fleet-burst.js')).fleetBurst,
  },
];

const usage = `usage: npm run bench [-- [--list] [scenario…]]

  --list, -l   list the scenarios and exit
  scenario     run only these (default: all)`;

function parseFlags(args: string[]) {
  return parseArgs({
    args,
    options: { list: { type: 'boolean', short: 'l' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
}

async function main(args: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(args);
  } catch (error) {
    // parseArgs names the unknown option ("Unknown option '--x'").
    console.error(`${error instanceof Error ? error.message : String(error)}\n\n${usage}`);
    return 2;
  }
  const { values, positionals: names } = parsed;
  if (values.help) {
    console.log(usage);
    return 0;
  }
  if (values.list) {
    const width = Math.max(...scenarios.map((s) => s.name.length));
    for (const s of scenarios) console.log(`${s.name.padEnd(width)}  ${s.description}`);
    return 0;
  }
  const unknown = names.filter((n) => !scenarios.some((s) => s.name === n));
  if (unknown.length > 0) {
    console.error(`unknown scenario: ${unknown.join(', ')}`);
    console.error(`scenarios: ${scenarios.map((s) => s.name).join(', ')}\n\n${usage}`);
    return 2;
  }
  const selected = names.length > 0 ? scenarios.filter((s) => names.includes(s.name)) : scenarios;

  let failed = 0;
  for (const entry of selected) {
    const say = (line: string) => console.error(`[${entry.name}] ${line}`);
    try {
      const scenario = await entry.load();
      const result = await scenario.run(say);
      const missed = result.targets.filter((t) => !met(t));
      console.log(`${renderResult(result)}\n`);
      console.log(
        JSON.stringify({
          ...result.json,
          scenario: result.scenario,
          ok: missed.length === 0,
          targets: result.targets.map((t) => ({ ...t, met: met(t) })),
        }),
      );
      if (missed.length > 0) {
        failed++;
        say(`MISSED ${missed.map((t) => `${t.label}: ${t.value} (target ${t.op} ${t.limit})`).join('; ')}`);
      }
    } catch (error) {
      failed++;
      say(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      console.log(JSON.stringify({ scenario: entry.name, ok: false, error: String(error) }));
    }
  }
  return failed > 0 ? 1 : 0;
}

// Exits explicitly: a scenario that timed out may leave a rollout's timers behind.
main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
