import { type ChildProcess, spawn } from 'node:child_process';
import { freePort } from './free-port.js';
import { findOrSetUpMoto, MotoSetupError } from './moto-setup.js';

export interface MotoServer {
  url: string;
  /** The moto_server process; 0 when moto runs in a container, which has no process here. */
  pid: number;
  /** Where it runs, for the user: "moto_server pid 123" or "the compose service moto". */
  label: string;
  stop(): Promise<void>;
}

export interface StartMotoOptions {
  readyTimeoutMs?: number;
  /** Where PATH and FLEETBOT_MOTO_VENV are read; the process environment by default. */
  env?: NodeJS.ProcessEnv;
  /** Tells the user about setting moto up when it is missing; stdout by default. */
  say?: (line: string) => void;
}

/**
 * Starts moto on a free port and waits until it answers. moto_server comes from the PATH, else from
 * the project's own virtualenv (set up here on first use), else from Docker: see moto-setup.ts.
 * Throws MotoSetupError, whose message is one line for the user, when no moto can be had.
 * The pyenv shim execs python, so a spawned child's pid is the server itself and one signal stops it.
 */
export async function startMoto(options: StartMotoOptions = {}): Promise<MotoServer> {
  const env = options.env ?? process.env;
  const launch = await findOrSetUpMoto({
    env,
    say: options.say ?? ((line) => process.stdout.write(`${line}\n`)),
  });
  const readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
  if (launch.kind === 'container') {
    // A container that was just created may still be starting moto.
    const answered = await waitUntilAnswering(
      launch.url,
      Date.now() + Math.max(readyTimeoutMs, 60_000),
      () => false,
    );
    if (!answered) {
      await launch.stop();
      throw new MotoSetupError(
        `the moto service did not answer on ${launch.url} in time; see: docker compose logs moto`,
      );
    }
    return { url: launch.url, pid: 0, label: launch.label, stop: launch.stop };
  }

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(launch.command, ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...env, MOTO_ALLOW_NONEXISTENT_REGION: 'true' },
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  let spawnError: Error | undefined;
  child.once('error', (error) => {
    spawnError = error;
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', () => resolve(null));
  });
  const failed = () => spawnError !== undefined || child.exitCode !== null;
  const answered = await waitUntilAnswering(url, Date.now() + readyTimeoutMs, failed);
  if (!answered) {
    await kill(child, exited);
    if (spawnError) throw new MotoSetupError(`${launch.command} could not be started: ${spawnError.message}`);
    // The last line of a Python traceback is its reason; the whole tail stays on the error for tests.
    const reason = stderr.trim().split('\n').at(-1) ?? '';
    const error = new MotoSetupError(
      child.exitCode !== null
        ? `moto_server exited with ${child.exitCode}${reason ? `: ${reason}` : ''}`
        : `moto_server did not answer on ${url} in time${reason ? `: ${reason}` : ''}`,
    );
    throw Object.assign(error, { stderr });
  }
  return { url, pid: child.pid ?? 0, label: `moto_server pid ${child.pid}`, stop: () => kill(child, exited) };
}

/** Polls moto's own API until it answers (true), `failed()` says to give up, or the deadline passes. */
async function waitUntilAnswering(url: string, deadline: number, failed: () => boolean): Promise<boolean> {
  for (;;) {
    if (failed()) return false;
    try {
      const res = await fetch(`${url}/moto-api/data.json`);
      if (res.ok) return true;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function kill(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(timer);
}
