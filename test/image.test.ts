import { once } from 'node:events';
import { cpSync, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { awsEnv } from './peers/aws-account.js';
import { freePort } from './peers/free-port.js';
import { testRedisUrl, uniquePrefix } from './peers/redis.js';
import { type FleetbotProcess, startProcess, waitForLog } from './support/fleetbot-process.js';

/**
 * The container image, reproduced without Docker (no engine runs here): the runtime stage's COPY,
 * ENV and `RUN npm ci` lines are read from the Dockerfile and carried out in a temporary directory
 * standing for /app, the build stage's `npm run build` is run into it, and the process is started
 * as ENTRYPOINT says, its HEALTHCHECK as HEALTHCHECK says.
 */

const root = join(import.meta.dirname, '..');

interface Instruction {
  keyword: string;
  args: string;
}
interface Stage {
  from: string;
  name?: string;
  instructions: Instruction[];
}

/** Stages of a Dockerfile, one instruction per logical line (continuations joined, comments dropped). */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  for (const line of lines) {
    const space = line.search(/\s/);
    const keyword = (space < 0 ? line : line.slice(0, space)).toUpperCase();
    const args = space < 0 ? '' : line.slice(space + 1).trim();
    if (keyword === 'FROM') {
      const [from = '', , name] = args.split(/\s+/);
      stages.push({ from, name, instructions: [] });
    } else stages.at(-1)?.instructions.push({ keyword, args });
  }
  return stages;
}

const dockerfile = parseDockerfile(readFileSync(join(root, 'Dockerfile'), 'utf8'));
const runtime = dockerfile.at(-1) as Stage;
const build = dockerfile.find((stage) => stage.name === 'build');
const argsOf = (stage: Stage | undefined, keyword: string) =>
  (stage?.instructions ?? []).filter((i) => i.keyword === keyword).map((i) => i.args);
/** ENV lines are KEY=value pairs (no quoting in ours). */
const envPairs = (args: string) =>
  Object.fromEntries(
    args.split(/\s+/).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
  );
const execForm = (args: string) => JSON.parse(args) as string[];

/** The runtime stage's environment just before its `RUN npm ci`, and at its end (what the process gets). */
function runtimeEnv(): { install: Record<string, string>; final: Record<string, string> } {
  let env: Record<string, string> = {};
  let install: Record<string, string> | undefined;
  for (const { keyword, args } of runtime.instructions) {
    if (keyword === 'ENV') env = { ...env, ...envPairs(args) };
    if (keyword === 'RUN' && args.includes('npm ci')) install = { ...env };
  }
  return { install: install ?? {}, final: env };
}

const entrypoint = execForm(argsOf(runtime, 'ENTRYPOINT')[0] ?? '[]');
const defaultCmd = execForm(argsOf(runtime, 'CMD')[0] ?? '[]');
const healthcheck = execForm((argsOf(runtime, 'HEALTHCHECK')[0] ?? '').replace(/^.*?\bCMD\s+/, ''));
/** `node` in the image's exec forms is this Node 24 (the image's tag is checked against it below). */
const asNode = (argv: string[]) => (argv[0] === 'node' ? [process.execPath, ...argv.slice(1)] : argv);

let app: string;
let containers = 0;
const started: FleetbotProcess[] = [];
const canary = 'CANARY-image-4b2e91';

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function run(argv: string[], options: { cwd: string; env: Record<string, string> }): Promise<Finished> {
  const p = startProcess(argv, options);
  // 'close' waits for the output to be read to its end; it rejects when the command cannot start.
  const [code] = (await once(p.child, 'close')) as [number | null];
  return { code, stdout: p.out(), stderr: p.err() };
}

async function mustRun(argv: string[], options: { cwd: string; env: Record<string, string> }): Promise<void> {
  const done = await run(argv, options);
  if (done.code !== 0)
    throw new Error(
      `${argv.join(' ')} exited ${done.code}:\n${done.stderr.slice(-3000)}${done.stdout.slice(-2000)}`,
    );
}

interface Container {
  /** Where the image's FLEETBOT_HEARTBEAT_FILE points in this stand-in for a container. */
  heartbeat: string;
  /** The runtime stage's ENV, the heartbeat moved into the temporary /app, then `env`. */
  env(env?: Record<string, string>): Record<string, string>;
}

function newContainer(): Container {
  const heartbeat = join(app, `heartbeat-${++containers}.json`);
  return {
    heartbeat,
    env: (env = {}) => ({
      PATH: process.env.PATH ?? '',
      ...runtimeEnv().final,
      FLEETBOT_HEARTBEAT_FILE: heartbeat,
      ...env,
    }),
  };
}

function start(container: Container, env: Record<string, string>, cmd: string[]): FleetbotProcess {
  const p = startProcess(asNode([...entrypoint, ...cmd]), { cwd: app, env: container.env(env) });
  started.push(p);
  return p;
}

const runHealthcheck = (container: Container) => run(asNode(healthcheck), { cwd: app, env: container.env() });

/** A dashboard-only container's configuration: valid for FLEETBOT_ENV=dev and nothing more. */
const dashboardEnv = async () => ({
  FLEETBOT_ENV: 'dev',
  ...awsEnv(inject('motoUrl')),
  REDIS_URL: testRedisUrl,
  REDIS_PREFIX: uniquePrefix('image'),
  DASHBOARD_LISTEN: `127.0.0.1:${await freePort()}`,
  DASHBOARD_PASSWORD: canary,
});

beforeAll(async () => {
  app = await mkdtemp(join(tmpdir(), 'fleetbot-image-'));
  const installs: Promise<void>[] = [];
  for (const args of argsOf(runtime, 'COPY')) {
    if (args === '--from=build /app/dist ./dist') {
      // The build stage's `npm run build`, into this /app's dist/.
      const script = (
        JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: { build: string } }
      ).scripts.build;
      installs.push(
        mustRun([...asNode(script.split(' ')), join(app, 'dist')], {
          cwd: root,
          env: { PATH: process.env.PATH ?? '' },
        }),
      );
    } else if (!args.startsWith('--') && args.endsWith(' ./')) {
      for (const file of args.split(' ').slice(0, -1)) cpSync(join(root, file), join(app, file));
    } else throw new Error(`this test does not reproduce the runtime stage's COPY ${args}`);
  }
  const npmCi = argsOf(runtime, 'RUN')
    .flatMap((args) => args.split('&&').map((part) => part.trim()))
    .find((part) => part.startsWith('npm ci'));
  if (!npmCi) throw new Error('the runtime stage has no RUN npm ci');
  // npm's own `#!/usr/bin/env node` finds this Node 24 first; the local npm cache spares the registry.
  const npmEnv = {
    PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
    HOME: process.env.HOME ?? '',
    ...runtimeEnv().install,
  };
  installs.push(mustRun([...npmCi.split(/\s+/), '--prefer-offline'], { cwd: app, env: npmEnv }));
  await Promise.all(installs);
}, 240_000);

afterAll(async () => {
  for (const p of started) p.child.kill('SIGKILL');
  await Promise.all(started.map((p) => p.exit));
  if (app) await rm(app, { recursive: true, force: true });
});

describe('the container image', () => {
  it('when the Dockerfile is read, then both stages run Node 24 and the runtime stage holds only the manifests, production packages and dist/', () => {
    expect(process.versions.node.split('.')[0]).toBe('24');
    expect(build?.from).toBe('node:24-bookworm-slim');
    expect(runtime.from).toBe('node:24-bookworm-slim');
    expect(argsOf(build, 'RUN')).toContain('npm run build');
    expect(argsOf(build, 'WORKDIR')).toEqual(['/app']);
    expect(argsOf(runtime, 'COPY')).toEqual([
      'package.json package-lock.json ./',
      '--from=build /app/dist ./dist',
    ]);
    expect(runtimeEnv().install).toMatchObject({ NODE_ENV: 'production' });
    expect(runtimeEnv().final.FLEETBOT_HEARTBEAT_FILE).toMatch(/^\/tmp\/\S+$/);
    expect(argsOf(runtime, 'USER')).toEqual(['node']);
    expect(entrypoint).toEqual(['node', 'dist/main.js']);
    expect(defaultCmd).toEqual(['--role', 'all']);
    expect(healthcheck).toEqual(['node', 'dist/healthcheck.js']);
  });

  it('when the runtime stage is installed, then no package that only development needs is there', () => {
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean; devOptional?: boolean }>;
    };
    const devOnly = Object.entries(lock.packages)
      .filter(([path, entry]) => path !== '' && (entry.dev || entry.devOptional))
      .map(([path]) => path);
    for (const name of ['tsx', 'typescript', 'vitest', 'node', '@cloud-copilot/iam-simulate'])
      expect(devOnly).toContain(`node_modules/${name}`);
    expect(devOnly.filter((path) => existsSync(join(app, path)))).toEqual([]);
    expect(existsSync(join(app, 'node_modules', 'bullmq'))).toBe(true);
    // userdata.ts reads these beside itself at run time.
    expect(existsSync(join(app, 'dist', 'aws', 'instance', 'read-secrets.sh'))).toBe(true);
    expect(existsSync(join(app, 'dist', 'aws', 'instance', 'openclaw-profile.sh'))).toBe(true);
    expect(existsSync(join(app, 'dist', 'aws', 'userdata.sh'))).toBe(true);
  });

  it('when the dashboard runs, then /healthz answers 200 and the health check passes; after a clean stop it fails', async () => {
    const env = await dashboardEnv();
    const container = newContainer();
    const p = start(container, env, ['--role', 'dashboard']);
    await waitForLog(p, (entry) => entry.msg === 'fleetbot started', 60_000);
    const healthz = await fetch(`http://${env.DASHBOARD_LISTEN}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.json()).toEqual({ status: 'ok' });
    // The first heartbeat is written right after the start line.
    await expect.poll(() => existsSync(container.heartbeat)).toBe(true);
    const healthy = await runHealthcheck(container);
    expect(healthy).toEqual({
      code: 0,
      stdout: 'fleetbot is alive (roles: dashboard); dashboard answered\n',
      stderr: '',
    });

    p.child.kill('SIGTERM');
    expect(await p.exit).toBe(0);
    const stopped = await runHealthcheck(container);
    expect(stopped).toEqual({
      code: 1,
      stdout: '',
      stderr: `no heartbeat at ${container.heartbeat}: fleetbot has not started yet, or has stopped\n`,
    });
    expect(p.out() + p.err()).not.toContain('CANARY');
  }, 120_000);

  it('when the process is killed and nothing listens, then the health check exits 1 naming the dashboard', async () => {
    const env = await dashboardEnv();
    const container = newContainer();
    const p = start(container, env, ['--role', 'dashboard']);
    await waitForLog(p, (entry) => entry.msg === 'fleetbot started', 60_000);
    await expect.poll(() => existsSync(container.heartbeat)).toBe(true);
    p.child.kill('SIGKILL');
    expect(await p.exit).toBe(null);
    // SIGKILL leaves a fresh heartbeat behind: the dashboard's silence is what fails the check.
    expect(await runHealthcheck(container)).toEqual({
      code: 1,
      stdout: '',
      stderr: `the dashboard does not answer at http://${env.DASHBOARD_LISTEN}/healthz (ECONNREFUSED)\n`,
    });
  }, 120_000);

  it('when the configuration is bad, then the process exits 1 with one line per problem and no stack trace', async () => {
    const env = await dashboardEnv();
    const { AWS_REGION: _, ...withoutRegion } = env;
    const [badRole, missingKey] = await Promise.all([
      run(asNode([...entrypoint, ...defaultCmd]), {
        cwd: app,
        env: newContainer().env({
          ...env,
          FLEETBOT_ROLE: 'nonsense',
          TELEGRAM_BOT_TOKEN: `123456789:${'A'.repeat(35)}`,
        }),
      }),
      run(asNode([...entrypoint, '--role', 'dashboard']), {
        cwd: app,
        env: newContainer().env(withoutRegion),
      }),
    ]);
    expect(badRole).toEqual({
      code: 1,
      stdout: '',
      stderr:
        'fleetbot: Invalid configuration:\n' +
        '  - FLEETBOT_ROLE: must be one or more of bot, worker, dashboard, all, separated by commas\n',
    });
    expect(missingKey).toEqual({
      code: 1,
      stdout: '',
      stderr: 'fleetbot: Invalid configuration:\n  - AWS_REGION: is required\n',
    });
  }, 120_000);
});
