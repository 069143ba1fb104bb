import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { allCommands } from '../../src/bot/commands/index.js';
import { configKeys } from '../../src/config.js';

const read = (file: string) => readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');

describe('documentation', () => {
  it('when a config key exists, then .env.example documents exactly the keys the schema reads', () => {
    const documented = [...read('.env.example').matchAll(/^([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...configKeys].sort());
  });

  it('when a config key exists, then the README configuration table names it', () => {
    const readme = read('README.md');
    const missing = configKeys.filter((key) => !readme.includes(`| \`${key}\` |`));
    expect(missing).toEqual([]);
  });

  it('when a visible command exists, then the README command table lists it', () => {
    const readme = read('README.md');
    const missing = allCommands
      .filter((c) => !c.hidden && !readme.includes(`| \`/${c.name}`))
      .map((c) => c.name);
    expect(missing).toEqual([]);
  });

  it('when a newcomer opens the README, then the quick start is exactly the two lines', () => {
    expect(read('README.md')).toContain('```sh\nnpm ci && npm run sandbox\nnpm test\n```');
  });
});
