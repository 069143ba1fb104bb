import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable } from 'node:stream';

export interface FleetbotProcess {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Resolves with the exit code (null when killed by a signal). */
  exit: Promise<number | null>;
  out(): string;
  err(): string;
}

/**
 * Runs the real entry point (or a script that starts fleetbot through it) as its own OS process, as
 * an operator would, with only `env` set.
 */
export function startFleetbotProcess(
  env: Record<string, string>,
  args: string[] = [],
  entry = 'src/main.ts',
): FleetbotProcess {
  return startProcess([process.execPath, '--import', 'tsx', entry, ...args], {
    env: { PATH: process.env.PATH ?? '', ...env },
  });
}

/** Runs `argv` with exactly `env` (and `cwd`), its output kept for the test to read. */
export function startProcess(
  argv: string[],
  options: { env: Record<string, string>; cwd?: string },
): FleetbotProcess {
  const [command = '', ...args] = argv;
  const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exit, out: () => stdout, err: () => stderr };
}

/** One line of fleetbot's JSON log; only the fields tests look at are named. */
export interface LogEntry {
  level: number;
  msg?: string;
  [field: string]: unknown;
}

/** The process's complete JSON log lines so far (a line still being written is left for later). */
export function logEntries(p: FleetbotProcess): LogEntry[] {
  return p
    .out()
    .split('\n')
    .slice(0, -1)
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as LogEntry);
}

/** Resolves with the first log entry, past or future, that matches; rejects on timeout or if the process exits first. */
export function waitForLog(
  p: FleetbotProcess,
  match: (entry: LogEntry) => boolean,
  timeoutMs: number,
): Promise<LogEntry> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const found = logEntries(p).find(match);
      if (found) done(() => resolve(found));
    };
    const exited = () =>
      done(() => reject(new Error(`fleetbot exited first; stderr: ${p.err().slice(-2000)}`)));
    const timer = setTimeout(
      () =>
        done(() =>
          reject(new Error(`no matching log line within ${timeoutMs} ms; stdout: ${p.out().slice(-2000)}`)),
        ),
      timeoutMs,
    );
    const done = (settle: () => void) => {
      clearTimeout(timer);
      p.child.stdout.off('data', check);
      p.child.off('exit', exited);
      settle();
    };
    p.child.stdout.on('data', check);
    p.child.once('exit', exited);
    check();
  });
}
