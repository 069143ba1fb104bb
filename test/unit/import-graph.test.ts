import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from '@babel/parser';
import { beforeAll, describe, expect, it } from 'vitest';

/**
 * The arrows point inward: adapters (bot, http) → jobs → core, and only src/aws speaks to AWS.
 * Every module in src/ is parsed as TypeScript (type-only imports count: they are dependencies of
 * the design even though they vanish at run time), so the graph is the code's, not a text search.
 */

const src = join(import.meta.dirname, '..', '..', 'src');

interface Edge {
  from: string;
  to: string;
}

/** Every module in src/, as a path relative to src/ ("jobs/rollout.ts"). */
const modules = readdirSync(src, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));

/** Every import and re-export in src/: ours as paths relative to src/, packages by name. */
function importGraph(): Edge[] {
  return modules.flatMap((from) => {
    const program = parse(readFileSync(join(src, from), 'utf8'), {
      sourceType: 'module',
      plugins: ['typescript'],
    }).program;
    return program.body.flatMap((node) => {
      const source =
        node.type === 'ImportDeclaration' ||
        node.type === 'ExportAllDeclaration' ||
        (node.type === 'ExportNamedDeclaration' && node.source)
          ? node.source?.value
          : undefined;
      if (source === undefined) return [];
      // Modules import each other as `./x.js` (NodeNext); the file is `x.ts`.
      const to = source.startsWith('.') ? join(dirname(from), source).replace(/\.js$/, '.ts') : source;
      return [{ from, to }];
    });
  });
}

/** The top folder of src/ a module lives in ("jobs"), or the module itself at the top ("main.ts"). */
const area = (path: string) => path.split('/')[0] ?? path;
const ours = (to: string) => !to.startsWith('node:') && /\.ts$/.test(to);
/** Where the process is put together: it alone may name the AWS implementations. */
const compositionRoot = (from: string) => from === 'main.ts' || area(from) === 'roles';

describe('the import graph of src/', () => {
  let edges: Edge[];
  beforeAll(() => {
    edges = importGraph();
  });
  const violations = (rule: (e: Edge) => boolean) => edges.filter(rule).map((e) => `${e.from} → ${e.to}`);

  it('is read in full (the test sees the modules it judges)', () => {
    for (const file of ['main.ts', 'core/rollout.ts', 'jobs/rollout.ts', 'bot/dispatch.ts', 'aws/fleet.ts'])
      expect(modules).toContain(file);
    expect(edges).toContainEqual({ from: 'aws/fleet.ts', to: '@aws-sdk/client-ec2' });
    // A type-only import is an edge too.
    expect(edges).toContainEqual({ from: 'bot/deps.ts', to: 'store/plans.ts' });
  });

  it('core imports nothing of ours but core', () => {
    expect(violations((e) => area(e.from) === 'core' && ours(e.to) && area(e.to) !== 'core')).toEqual([]);
  });

  it('only src/aws imports the AWS SDK', () => {
    expect(violations((e) => area(e.from) !== 'aws' && e.to.startsWith('@aws-sdk/'))).toEqual([]);
  });

  it('only src/aws and the composition root import src/aws; everything else uses the ports in core', () => {
    expect(
      violations(
        (e) => area(e.to) === 'aws' && ours(e.to) && area(e.from) !== 'aws' && !compositionRoot(e.from),
      ),
    ).toEqual([]);
  });

  it('jobs, http and store never import the bot', () => {
    expect(
      violations(
        (e) => ['jobs', 'http', 'store'].includes(area(e.from)) && ours(e.to) && area(e.to) === 'bot',
      ),
    ).toEqual([]);
  });

  it('store and core never import jobs', () => {
    expect(
      violations((e) => ['store', 'core'].includes(area(e.from)) && ours(e.to) && area(e.to) === 'jobs'),
    ).toEqual([]);
  });

  it('nothing but main imports the roles', () => {
    expect(violations((e) => area(e.to) === 'roles' && ours(e.to) && !compositionRoot(e.from))).toEqual([]);
  });
});
