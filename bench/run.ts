/**
 * `npm run bench` runs every scenario; `npm run bench -- <name>…` runs some; `npm run bench -- --list`
 * lists them. Each prints a table and one JSON line on stdout (progress goes to stderr) and the
 * process exits 1 when any target is missed or a scenario fails, so the bench can gate a change.
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type Outcome, resultsMarkdown } from './results.js';
import { met, renderResult, type Scenario } from './scenario.js';

/** A scenario's sizes from `--param key=value`: numbers, or comma-separated lists of them. */
type Params = Record<string, number[]>;
const one = (params: Params, key: string) => params[key]?.[0];

/** Loaded lazily, so `--list` is instant. `params` are the sizes this run asks for (defaults otherwise). */
const scenarios: {
  name: string;
  description: string;
  params: string;
  load: (params: Params) => Promise<Scenario>;
}[] = [
  {
    name: 'rollout',
    description:
      'deploy to 1,000 (20%) and 10,000 (400 at once) instances with completion events and with adaptive polling, beside the ideal refill and SSM alone (about 4 min)',
    params: 'instances=1000,10000',
    load: async (params) => {
      const { defaultSizes, rolloutBench, rolloutScenario } = await import('./rollout.js');
      const instances = params.instances;
      if (!instances) return rolloutBench;
      // A size the defaults do not name runs at their smaller fleet's concurrency.
      const sizes = instances.map(
        (n) => defaultSizes.find((s) => s.instances === n) ?? { instances: n, concurrency: '20%' },
      );
      return rolloutScenario({ name: 'rollout', sizes, modes: ['events', 'polling'] });
    },
  },
  {
    name: 'provision-200',
    description: 'members /provision at once through the fake Bot API (200: about 2.5 min)',
    params: 'members=200',
    load: async (params) =>
      (await import('./provision.js')).provisionScenario({
        name: 'provision-200',
        members: one(params, 'members'),
      }),
  },
  {
    name: 'intake-50',
    description: 'members paste both secrets at once, beside a bare grammY bot (50: about 1 min)',
    params: 'members=50',
    load: async (params) =>
      (await import('./intake.js')).intakeScenario({ name: 'intake-50', members: one(params, 'members') }),
  },
  {
    name: 'ack',
    description: 'signed slash commands against fleetbot and a bare Bolt app (about 1 min)',
    params: 'rates=20,100',
    load: async (params) => (await import('./ack.js')).ackScenario({ rates: params.rates }),
  },
  {
    name: 'fleet-burst',
    description: 'concurrent /fleet from admins: AWS calls and answer times (under a minute)',
    params: 'burst=60',
    load: async (params) =>
      (await import('./fleet-burst.js')).fleetBurstScenario({ burst: one(params, 'burst') }),
  },
];

const usage = `usage: npm run bench [-- [--list] [--param key=value…] [--results file] [scenario…]]

  --list, -l       list the scenarios and their sizes, and exit
  --param, -p      a size of the scenarios run (e.g. -p instances=2000 rollout); lists are comma-separated
  --results FILE   also write every result, with its targets met or missed, as Markdown (bench/RESULTS.md)
  scenario         run only these (default: all)`;

function parseFlags(args: string[]) {
  return parseArgs({
    args,
    options: {
      list: { type: 'boolean', short: 'l' },
      help: { type: 'boolean', short: 'h' },
      param: { type: 'string', short: 'p', multiple: true },
      results: { type: 'string' },
    },
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
    for (const s of scenarios) console.log(`${s.name.padEnd(width)}  ${s.description} [-p ${s.params}]`);
    return 0;
  }
  const params: Params = {};
  for (const pair of values.param ?? []) {
    const [key, value = ''] = pair.split('=', 2);
    const numbers = value.split(',').map(Number);
    if (!key || numbers.some((n) => !(Number.isInteger(n) && n > 0))) {
      console.error(`--param ${pair}: want key=N or key=N,M (positive whole numbers)\n\n${usage}`);
      return 2;
    }
    params[key] = numbers;
  }
  const unknown = names.filter((n) => !scenarios.some((s) => s.name === n));
  if (unknown.length > 0) {
    console.error(`unknown scenario: ${unknown.join(', ')}`);
    console.error(`scenarios: ${scenarios.map((s) => s.name).join(', ')}\n\n${usage}`);
    return 2;
  }
  const selected = names.length > 0 ? scenarios.filter((s) => names.includes(s.name)) : scenarios;

  let failed = 0;
  const started = Date.now();
  const outcomes: Outcome[] = [];
  for (const entry of selected) {
    const say = (line: string) => console.error(`[${entry.name}] ${line}`);
    try {
      const scenario = await entry.load(params);
      const result = await scenario.run(say);
      outcomes.push({ name: entry.name, result });
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
      outcomes.push({ name: entry.name, error: String(error) });
    }
  }
  if (values.results) {
    await writeFile(values.results, resultsMarkdown(outcomes, Date.now() - started));
    console.error(`results written to ${values.results}`);
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
