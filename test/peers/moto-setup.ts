import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { delimiter, isAbsolute, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Finds moto_server for the sandbox and the tests, and sets it up on a machine that lacks it:
 * a project-local virtualenv when python3 is here, else the compose file's moto service when a
 * Docker engine runs, else one message naming what to install.
 */

/** The moto release everything here runs; docker-compose.yml's moto image carries the same tag. */
export const motoVersion = '5.2.1';
export const motoRequirement = `moto[server]==${motoVersion}`;

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));
export const composeFile = join(projectRoot, 'docker-compose.yml');
/** Overridable so tests can set one up (or fake one) without touching the project's own. */
export const venvEnvVar = 'FLEETBOT_MOTO_VENV';

/** Setting moto up failed for a reason the user can act on; the message is one plain line. */
export class MotoSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MotoSetupError';
  }
}

export type MotoLaunch =
  /** A moto_server executable to spawn on a port of our choosing. */
  | { kind: 'command'; command: string }
  /** A moto already started in a container, answering on url. */
  | { kind: 'container'; url: string; label: string; stop(): Promise<void> };

export interface MotoSetupOptions {
  /** Where PATH and FLEETBOT_MOTO_VENV are read. */
  env: NodeJS.ProcessEnv;
  /** Tells the user what is happening, one line at a time. */
  say: (line: string) => void;
}

const installMoto = `pipx install "${motoRequirement}" (or pip install "${motoRequirement}")`;

export async function findOrSetUpMoto({ env, say }: MotoSetupOptions): Promise<MotoLaunch> {
  const onPath = findOnPath('moto_server', env);
  if (onPath) return { kind: 'command', command: onPath };

  const venv = env[venvEnvVar] || join(projectRoot, '.venv-moto');
  const venvMoto = join(venv, 'bin', 'moto_server');
  const shown = displayPath(venv);
  if (isExecutable(venvMoto)) {
    say(`moto_server is not on the PATH; using the one set up in ${shown}.`);
    return { kind: 'command', command: venvMoto };
  }

  const python = findOnPath('python3', env);
  if (python) {
    say(
      `moto_server (the local AWS emulator) is not on the PATH; setting up moto ${motoVersion} in ${shown} (this once).`,
    );
    await setUpVenv(python, venv, shown, env, say);
    return { kind: 'command', command: venvMoto };
  }

  const docker = findOnPath('docker', env);
  if (docker) {
    const info = await run(docker, ['info'], env, 15_000);
    if (info.code === 0) {
      say('moto_server (the local AWS emulator) is not on the PATH and python3 is not here; using Docker.');
      return startComposeMoto(docker, env, say);
    }
    throw new MotoSetupError(
      'moto_server (the local AWS emulator) is not on the PATH, python3 is not here to set it up, ' +
        'and Docker is installed but its engine does not answer (docker info failed). ' +
        `Start the Docker engine, or install moto with: ${installMoto}, or install Python 3; then run this again.`,
    );
  }
  throw new MotoSetupError(
    'moto_server (the local AWS emulator) is not on the PATH, and neither python3 nor Docker is here ' +
      `to set it up. Install moto with: ${installMoto}, or install Python 3 or Docker; then run this again.`,
  );
}

async function setUpVenv(
  python: string,
  venv: string,
  shown: string,
  env: NodeJS.ProcessEnv,
  say: (line: string) => void,
): Promise<void> {
  if (existsSync(venv)) {
    // What an interrupted setup leaves behind: rebuilt from scratch rather than trusted. Only a
    // directory that is clearly ours is removed, never whatever FLEETBOT_MOTO_VENV happens to name.
    if (!isDirectory(venv) || !(existsSync(join(venv, 'pyvenv.cfg')) || readdirSync(venv).length === 0)) {
      throw new MotoSetupError(
        `${shown} exists but is not a Python virtualenv holding moto: remove it, or set ${venvEnvVar} to another directory.`,
      );
    }
    say(`${shown} holds an unfinished setup; starting it again.`);
    rmSync(venv, { recursive: true, force: true });
  }
  say(`Creating a Python virtualenv in ${shown}…`);
  const created = await run(python, ['-m', 'venv', venv], env);
  if (created.code !== 0) {
    rmSync(venv, { recursive: true, force: true });
    throw new MotoSetupError(
      `python3 could not create a virtualenv in ${shown} (${summary(created)}). ` +
        `On Debian or Ubuntu install python3-venv, or install moto yourself with: ${installMoto}; then run this again.`,
    );
  }
  say(`Installing ${motoRequirement} into it with pip (a minute or so)…`);
  // pip's own defaults wait 15 s per attempt and retry 5 times, per index: minutes of silence when
  // the index is unreachable. One short retry is enough for a blip.
  const installed = await run(
    join(venv, 'bin', 'python'),
    [
      '-m',
      'pip',
      'install',
      '--disable-pip-version-check',
      '--no-input',
      '--retries',
      '1',
      '--timeout',
      '10',
      motoRequirement,
    ],
    env,
  );
  if (installed.code !== 0) {
    rmSync(venv, { recursive: true, force: true });
    throw new MotoSetupError(
      `pip could not install ${motoRequirement} (${summary(installed)}). Check that this machine reaches PyPI ` +
        `(or pip's index settings) and run this again, or install it yourself: pipx install "${motoRequirement}".`,
    );
  }
  say(`moto ${motoVersion} is ready in ${shown}.`);
}

async function startComposeMoto(
  docker: string,
  env: NodeJS.ProcessEnv,
  say: (line: string) => void,
): Promise<MotoLaunch> {
  const compose = (args: string[]) => run(docker, ['compose', '-f', composeFile, ...args], env);
  // A moto service the user already runs is used and left running; one started here is stopped at the end.
  const running = await compose(['ps', '--status', 'running', '--quiet', 'moto']);
  const alreadyRunning = running.code === 0 && running.stdout.trim() !== '';
  if (!alreadyRunning) {
    say('Starting the moto service of docker-compose.yml (docker compose up --detach moto)…');
    const up = await compose(['up', '--detach', 'moto']);
    if (up.code !== 0) {
      throw new MotoSetupError(
        `docker compose could not start the moto service (${summary(up)}). Fix that, or install moto with: ${installMoto}; then run this again.`,
      );
    }
  }
  const stop = async () => {
    if (!alreadyRunning) await compose(['stop', 'moto']);
  };
  const port = await compose(['port', 'moto', '5000']);
  const published = /([\d.]+|\[[\da-f:]+\]):(\d+)\s*$/i.exec(port.stdout.trim());
  if (port.code !== 0 || !published) {
    await stop();
    throw new MotoSetupError(
      `the moto service of docker-compose.yml publishes no port for 5000 (${summary(port)}): publish one and run this again.`,
    );
  }
  const host = published[1] === '0.0.0.0' || published[1] === '[::]' ? '127.0.0.1' : published[1];
  return {
    kind: 'container',
    url: `http://${host}:${published[2]}`,
    label: 'the compose service moto',
    stop,
  };
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  error?: Error;
}

/** Runs a command to completion; never throws, so every failure can be told in the user's terms. */
function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs?: number,
): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout = (stdout + chunk.toString()).slice(-20_000);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-20_000);
    });
    child.once('error', (error) => resolve({ code: null, stdout, stderr, error }));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The line of a failed command's output that says why, without pip's "ERROR: " and the like. */
function summary(result: RunResult): string {
  if (result.error) return result.error.message;
  const output = `${result.stderr}\n${result.stdout}`;
  // pip's last words on an unreachable index are "no matching distribution"; the reason is earlier.
  const unreachable =
    /Failed to establish a new connection: \[Errno -?\d+\] ([^'"]+)|(Read timed out|timed out)/.exec(output);
  if (unreachable)
    return `the package index did not answer: ${(unreachable[1] ?? unreachable[2] ?? '').trim()}`;
  const lines = output
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const why = [...lines].reverse().find((l) => /^(ERROR|error|Error)\b/.test(l)) ?? lines.at(-1);
  if (!why) return `exit code ${result.code}`;
  const text = why.replace(/^(ERROR|error|Error):?\s*/, '');
  return text.length > 240 ? `${text.slice(0, 240)}…` : text;
}

export function findOnPath(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Relative to where the user stands when it is below it, so messages read `.venv-moto/`. */
function displayPath(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? `${rel}/` : `${path}/`;
}
