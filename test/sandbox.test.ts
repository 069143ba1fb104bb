import { execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { devNull, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { freePort } from './peers/free-port.js';
import { captureOutput } from './support/lines.js';

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm run sandbox', () => {
  it('when a newcomer runs it, then both identities get /help and /whoami, and Ctrl-C leaves no process behind', async () => {
    const input = new PassThrough();
    const output = captureOutput();
    // Its own process group, so the test can deliver Ctrl-C to the whole group as a terminal does.
    const child = spawn('npm', ['run', '--silent', 'sandbox'], {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'info' },
    });
    input.pipe(child.stdin);
    child.stdout.pipe(output.stream);
    child.stderr.pipe(output.stream);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await output.waitFor(/telegram user 42> /, 30_000);
      input.write('/help\n');
      await output.waitFor(/\/secrets - list which secrets you have stored/);
      input.write('/whoami\n');
      await output.waitFor(/You are Telegram user 42 \(console\), role: member/);
      input.write('/as admin U123\n/help\n');
      await output.waitFor(/\/ping - check that a worker picks up jobs/);
      input.write('/whoami\n');
      await output.waitFor(/You are Slack user U123 \(console\), role: fleet admin/);
      // The dashboard it announced is up and asks for the announced credentials.
      const dashboard = /Dashboard on (http:\/\/[\d.:]+)\/jobs\//.exec(output.text())?.[1] ?? '';
      expect((await fetch(`${dashboard}/fleet`)).status).toBe(401);
      const fleet = await fetch(`${dashboard}/fleet`, {
        headers: { authorization: `Basic ${btoa('ops:sandbox-password')}` },
      });
      expect(fleet.status).toBe(200);
      const motoPid = Number(/moto_server pid (\d+)/.exec(output.text())?.[1]);
      expect(processExists(motoPid)).toBe(true);

      process.kill(-(child.pid ?? 0), 'SIGINT');
      await exited;
      // Every process the sandbox started (npm, node, moto_server) is gone, not just the one we spawned.
      // npm exits first; the rest of its group shuts down within the workers' grace, not instantly.
      await expect.poll(() => processExists(-(child.pid ?? 0)), { timeout: 15_000 }).toBe(false);
      expect(processExists(motoPid)).toBe(false);
    } finally {
      if (processExists(-(child.pid ?? 0))) process.kill(-(child.pid ?? 0), 'SIGKILL');
    }
  }, 60_000);
});

/** A directory of exactly these tools, to stand for the PATH of a machine that has only them. */
function toolsOnly(tools: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'fleetbot-path-'));
  for (const [name, target] of Object.entries(tools)) symlinkSync(target, join(dir, name));
  return dir;
}

/** A script standing for a command, written into the tool directory. */
function script(dir: string, name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return path;
}

const realPython = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], {
  encoding: 'utf8',
}).trim();

/** The environment without pip's settings of this machine, so only what a test sets reaches pip. */
function withoutPipSettings(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([key]) => !key.startsWith('PIP_')));
}

/** `npx tsx test/sandbox.ts` on a machine whose PATH is `path`; stdout and stderr kept apart. */
function startSandbox(path: string, env: NodeJS.ProcessEnv = {}) {
  const input = new PassThrough();
  const out = captureOutput();
  const err = captureOutput();
  const all = captureOutput();
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/sandbox.ts'], {
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'info', ...env, PATH: path },
  });
  input.pipe(child.stdin);
  child.stdout.pipe(out.stream);
  child.stderr.pipe(err.stream);
  child.stdout.pipe(all.stream);
  child.stderr.pipe(all.stream);
  const exitCode = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const killGroup = () => {
    if (processExists(-(child.pid ?? 0))) process.kill(-(child.pid ?? 0), 'SIGKILL');
  };
  return { input, out, err, all, exitCode, killGroup };
}

/** What a user must never see: a stack frame, or the raw system error of a missing command. */
function expectNoStackTrace(text: string) {
  expect(text).not.toMatch(/^\s+at /m);
  expect(text).not.toContain('ENOENT');
}

describe('npm run sandbox without Redis', () => {
  it('when no Redis answers, then it says so and how to start one in one line, and exits 1', async () => {
    const sandbox = startSandbox(process.env.PATH ?? '', {
      REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    });
    try {
      expect(await sandbox.exitCode).toBe(1);
      const lines = sandbox.err.text().trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^fleetbot: Redis does not answer at 127\.0\.0\.1:\d+ \(REDIS_URL\)\. Start one with: redis-server /,
      );
      expectNoStackTrace(sandbox.all.text());
    } finally {
      sandbox.killGroup();
    }
  });
});

describe('npm run sandbox on a machine without moto_server', () => {
  const scratch = mkdtempSync(join(tmpdir(), 'fleetbot-first-run-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it.each([
    ['neither python3 nor docker is on the PATH', {}, /neither python3 nor Docker is here/],
    [
      'docker is there but no engine answers',
      { docker: 'engine-down' },
      /Docker is installed but its engine does not answer \(docker info failed\)\. Start the Docker engine/,
    ],
  ])('when %s, then it names what to install in one line and exits 1', async (_case, tools, why) => {
    const path = toolsOnly({ node: process.execPath });
    if ('docker' in tools) {
      script(
        path,
        'docker',
        'echo "Cannot connect to the Docker daemon. Is the docker daemon running?" >&2; exit 1',
      );
    }
    const sandbox = startSandbox(path, { FLEETBOT_MOTO_VENV: join(scratch, 'never-made') });
    try {
      expect(await sandbox.exitCode).toBe(1);
      const lines = sandbox.err.text().trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^fleetbot: moto_server \(the local AWS emulator\) is not on the PATH/);
      expect(lines[0]).toMatch(why);
      expect(lines[0]).toContain('pipx install "moto[server]==5.2.1"');
      expect(lines[0]).toContain('pip install "moto[server]==5.2.1"');
      expectNoStackTrace(sandbox.all.text());
      expect(existsSync(join(scratch, 'never-made'))).toBe(false);
    } finally {
      sandbox.killGroup();
    }
  });

  it('when python3 is there but the package index does not answer, then it says it creates the virtualenv, fails in one line saying what to do, and leaves no half-made virtualenv', async () => {
    const path = toolsOnly({ node: process.execPath, python3: realPython });
    const venv = join(scratch, 'venv-offline');
    // What an interrupted earlier setup leaves: a virtualenv without moto in it.
    mkdirSync(venv);
    writeFileSync(join(venv, 'pyvenv.cfg'), 'home = /nowhere\n');
    const sandbox = startSandbox(path, {
      ...withoutPipSettings(process.env),
      FLEETBOT_MOTO_VENV: venv,
      // No configuration file of this machine, and an index on a port nobody listens on.
      PIP_CONFIG_FILE: devNull,
      PIP_INDEX_URL: `http://127.0.0.1:${await freePort()}/simple/`,
    });
    try {
      expect(await sandbox.exitCode).toBe(1);
      const said = sandbox.out.text();
      const steps = [
        `moto_server (the local AWS emulator) is not on the PATH; setting up moto 5.2.1 in ${venv}/`,
        `${venv}/ holds an unfinished setup; starting it again.`,
        `Creating a Python virtualenv in ${venv}/…`,
        'Installing moto[server]==5.2.1 into it with pip',
      ];
      for (const step of steps) expect(said).toContain(step);
      expect(steps.map((s) => said.indexOf(s))).toEqual(
        steps.map((s) => said.indexOf(s)).sort((a, b) => a - b),
      );
      const lines = sandbox.err.text().trim().split('\n');
      expect(lines).toEqual([
        'fleetbot: pip could not install moto[server]==5.2.1 (the package index did not answer: Connection refused). ' +
          "Check that this machine reaches PyPI (or pip's index settings) and run this again, " +
          'or install it yourself: pipx install "moto[server]==5.2.1".',
      ]);
      expectNoStackTrace(sandbox.all.text());
      // Nothing half-made stays behind to be mistaken for a working setup next time.
      expect(existsSync(venv)).toBe(false);
    } finally {
      sandbox.killGroup();
    }
  });

  it('when the virtualenv directory holds something else, then it refuses in one line and leaves it as it was', async () => {
    const path = toolsOnly({ node: process.execPath, python3: realPython });
    const notAVenv = join(scratch, 'someone-elses');
    mkdirSync(notAVenv);
    writeFileSync(join(notAVenv, 'notes.txt'), 'keep me\n');
    const sandbox = startSandbox(path, { FLEETBOT_MOTO_VENV: notAVenv });
    try {
      expect(await sandbox.exitCode).toBe(1);
      expect(sandbox.err.text().trim().split('\n')).toEqual([
        `fleetbot: ${notAVenv}/ exists but is not a Python virtualenv holding moto: remove it, or set FLEETBOT_MOTO_VENV to another directory.`,
      ]);
      expect(sandbox.out.text()).not.toContain('Creating a Python virtualenv');
      expect(readdirSync(notAVenv)).toEqual(['notes.txt']);
    } finally {
      sandbox.killGroup();
    }
  });

  it('when the virtualenv already holds moto_server, then it is used as it is and the console opens', async () => {
    // No python3 on this PATH: reaching the console proves nothing was installed.
    const path = toolsOnly({ node: process.execPath });
    const venv = join(scratch, 'venv-ready');
    mkdirSync(join(venv, 'bin'), { recursive: true });
    // Stands for the moto_server pip would have put there: the real one, found on this machine's PATH.
    script(join(venv, 'bin'), 'moto_server', `PATH='${process.env.PATH}' exec moto_server "$@"`);
    const sandbox = startSandbox(path, { FLEETBOT_MOTO_VENV: venv });
    try {
      await sandbox.out.waitFor(/telegram user 42> /, 30_000);
      const said = sandbox.out.text();
      expect(said).toContain(`moto_server is not on the PATH; using the one set up in ${venv}/.`);
      expect(said).not.toContain('Creating a Python virtualenv');
      expect(said).toMatch(/AWS simulator on http:\/\/[\d.:]+ \(moto_server pid \d+\)/);
      sandbox.input.write('/quit\n');
      expect(await sandbox.exitCode).toBe(0);
      expect(sandbox.err.text()).toBe('');
    } finally {
      sandbox.killGroup();
    }
  });

  it('when neither moto_server nor python3 is there but a Docker engine runs, then the compose moto service is started, used on its published port, and stopped at the end', async () => {
    const path = toolsOnly({ node: process.execPath });
    const state = mkdtempSync(join(scratch, 'docker-'));
    const port = await freePort();
    // No engine runs on this machine: this docker runs the compose moto service as a real moto_server
    // on the port it publishes, and records what it was asked.
    script(
      path,
      'docker',
      [
        `PATH='${process.env.PATH}'`,
        `echo "$*" >> '${state}/calls'`,
        'case "$*" in',
        '  info) ;;',
        '  *" ps --status running --quiet moto") ;;',
        `  *" up --detach moto") moto_server -H 127.0.0.1 -p ${port} >/dev/null 2>&1 & echo $! > '${state}/pid' ;;`,
        `  *" port moto 5000") echo 0.0.0.0:${port} ;;`,
        `  *" stop moto") kill "$(cat '${state}/pid')" ;;`,
        '  *) echo "unexpected: $*" >&2; exit 2 ;;',
        'esac',
      ].join('\n'),
    );
    const sandbox = startSandbox(path, { FLEETBOT_MOTO_VENV: join(scratch, 'never-made') });
    try {
      await sandbox.out.waitFor(/telegram user 42> /, 30_000);
      const said = sandbox.out.text();
      expect(said).toContain('is not on the PATH and python3 is not here; using Docker.');
      expect(said).toContain(
        'Starting the moto service of docker-compose.yml (docker compose up --detach moto)…',
      );
      expect(said).toMatch(/AWS simulator on http:\/\/[\d.:]+ \(the compose service moto\)/);
      const motoPid = Number(readFileSync(join(state, 'pid'), 'utf8'));
      expect(processExists(motoPid)).toBe(true);
      sandbox.input.write('/quit\n');
      expect(await sandbox.exitCode).toBe(0);
      const compose = `compose -f ${join(process.cwd(), 'docker-compose.yml')}`;
      expect(readFileSync(join(state, 'calls'), 'utf8').trim().split('\n')).toEqual([
        'info',
        `${compose} ps --status running --quiet moto`,
        `${compose} up --detach moto`,
        `${compose} port moto 5000`,
        `${compose} stop moto`,
      ]);
      await expect.poll(() => processExists(motoPid)).toBe(false);
      expect(existsSync(join(scratch, 'never-made'))).toBe(false);
    } finally {
      sandbox.killGroup();
    }
  });
});
