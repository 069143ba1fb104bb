/**
 * What the Slack scenarios share: a client that sends signed slash commands the way Slack does and
 * times each answer, and the processes they measure (fleetbot through its real entry point, a peer
 * run as a child of its own), so the client's event loop carries nothing but the client.
 */
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import type { Readable } from 'node:stream';
import {
  type SlashCommandFields,
  signSlackRequest,
  slashCommandPayload,
} from '../test/peers/slack-signer.js';
import { type FleetbotProcess, startFleetbotProcess } from '../test/support/fleetbot-process.js';
import { percentile } from './measure.js';

/** Slack gives up on a request not answered within 3 s and shows the user an error. */
export const slackAckLimitMs = 3000;

export interface Delivery {
  /** 0 when no HTTP answer came (refused, reset, timed out). */
  status: number;
  /** From writing the request to the last byte of the answer. */
  ms: number;
  /** When the request was written, on `performance.now()`'s clock. */
  sentAt: number;
  error?: string;
}

export interface SlackClient {
  /** Sends one slash command, signed with `signingSecret`; never rejects, a failure is a status 0. */
  command(eventsUrl: string, signingSecret: string, fields: SlashCommandFields): Promise<Delivery>;
  close(): void;
}

/**
 * node:http with one keep-alive pool per target, not fetch: the client's own cost per request is
 * added to every sample of every target alike, so the lighter it is, the less it flattens a ratio
 * between two targets. A hung request gives up after `timeoutMs`.
 */
export function createSlackClient(timeoutMs = 10_000): SlackClient {
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  return {
    command(eventsUrl, signingSecret, fields) {
      // Each payload carries a fresh trigger_id, so no two bodies (and no two signatures) are alike:
      // fleetbot drops a signature it has seen before as a replay.
      const body = new URLSearchParams(slashCommandPayload(fields)).toString();
      const timestampSec = Math.floor(Date.now() / 1000);
      const headers = {
        // Exactly this value: Bolt compares content-type with === and would not parse a charset suffix.
        'content-type': 'application/x-www-form-urlencoded',
        'content-length': String(Buffer.byteLength(body)),
        'user-agent': 'Slackbot 1.0 (+https://api.slack.com/robots)',
        'x-slack-request-timestamp': String(timestampSec),
        'x-slack-signature': signSlackRequest(signingSecret, body, timestampSec),
      };
      return new Promise<Delivery>((resolve) => {
        const sentAt = performance.now();
        const done = (status: number, error?: string) =>
          resolve({ status, ms: performance.now() - sentAt, sentAt, ...(error ? { error } : {}) });
        const req = request(eventsUrl, { method: 'POST', agent, headers }, (res) => {
          res.resume();
          res.once('end', () => done(res.statusCode ?? 0));
          res.once('error', (err) => done(0, err.message));
        });
        req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
        req.once('error', (err) => done(0, err.message));
        req.end(body);
      });
    },
    close() {
      agent.destroy();
    },
  };
}

export interface Spread {
  n: number;
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles (p99 of 200 samples is the 2nd largest), in ms to 0.1. */
export function spread(values: readonly number[]): Spread {
  const at = (p: number) => percentile(values, p) ?? Number.NaN;
  const tenth = (n: number) => Math.round(n * 10) / 10;
  return { n: values.length, p50: tenth(at(50)), p99: tenth(at(99)), max: tenth(at(100)) };
}

export const formatSpread = (s: Spread) => `${s.p50} / ${s.p99} / ${s.max} ms (n ${s.n})`;

/**
 * Stops a child: SIGTERM, then SIGKILL if it is still there after `graceMs`. Until then, a bench
 * process that exits (an uncaught error, `process.exit`) takes the child with it instead of leaving
 * it listening on its port.
 */
function stopper(
  child: ChildProcessByStdio<null, Readable, Readable>,
  exit: Promise<unknown>,
  graceMs: number,
): () => Promise<void> {
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  void exit.then(() => process.off('exit', killOnExit));
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const hung = await Promise.race([
      exit.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (hung) {
      child.kill('SIGKILL');
      await exit;
    }
  };
}

export interface RunningFleetbot {
  pid: number;
  eventsUrl: string;
  /** How many log lines with this `msg` fleetbot has written so far. */
  logged(msg: string): number;
  /** Resolves once `logged(msg)` reaches `count`; false when `timeoutMs` passed first. */
  waitLogged(msg: string, count: number, timeoutMs: number): Promise<boolean>;
  /** Warnings and worse, as logged (the first 20). */
  problems(): string[];
  stop(): Promise<void>;
}

/**
 * fleetbot's real entry point as its own process (`src/main.ts --role bot`), configured only through
 * `env`, as an operator starts it: main opens Redis, the queues and the Slack receiver itself.
 * Its JSON log is counted line by line as it comes, by message: what the scenarios wait on.
 */
export async function startFleetbot(env: Record<string, string>, readyTimeoutMs = 60_000) {
  const p: FleetbotProcess = startFleetbotProcess(env, ['--role', 'bot']);
  const counts = new Map<string, number>();
  const problems: string[] = [];
  const waiters = new Set<() => void>();
  let port: number | undefined;
  let partial = '';
  p.child.stdout.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      let entry: { level?: number; msg?: string; ports?: { slack?: number } };
      try {
        entry = JSON.parse(line);
      } catch {
        continue;
      }
      const msg = entry.msg ?? '';
      counts.set(msg, (counts.get(msg) ?? 0) + 1);
      if ((entry.level ?? 0) >= 40 && problems.length < 20) problems.push(line.slice(0, 400));
      if (msg === 'fleetbot started') port = entry.ports?.slack;
    }
    for (const wake of waiters) wake();
  });
  const stopped = stopper(p.child, p.exit, 10_000);

  const waitLogged = (msg: string, count: number, timeoutMs: number) =>
    new Promise<boolean>((resolve) => {
      const check = () => {
        if ((counts.get(msg) ?? 0) >= count) finish(true);
        else if (p.child.exitCode !== null || p.child.signalCode !== null) finish(false);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (met: boolean) => {
        clearTimeout(timer);
        waiters.delete(check);
        resolve(met);
      };
      waiters.add(check);
      check();
    });
  // An exit wakes the waiters too: nothing more will be logged.
  void p.exit.then(() => {
    for (const wake of waiters) wake();
  });

  if (!(await waitLogged('fleetbot started', 1, readyTimeoutMs)) || port === undefined) {
    await stopped();
    throw new Error(`fleetbot did not start: ${p.err().slice(-2000) || p.out().slice(-2000)}`);
  }
  return {
    pid: p.child.pid ?? 0,
    eventsUrl: `http://127.0.0.1:${port}/slack/events`,
    logged: (msg: string) => counts.get(msg) ?? 0,
    waitLogged,
    problems: () => [...problems],
    stop: stopped,
  } satisfies RunningFleetbot;
}

export interface NodeChild<Info> {
  pid: number;
  /** What the child printed as its first JSON line once it was ready. */
  info: Info;
  stop(): Promise<void>;
}

/**
 * Runs an ES module given as text in a Node process of its own (with tsx, so it can import the
 * project's TypeScript peers), from the project root. The module prints one JSON line once it is
 * ready; what it prints is handed back.
 */
export async function startNodeChild<Info>(
  source: string,
  env: Record<string, string> = {},
  readyTimeoutMs = 60_000,
): Promise<NodeChild<Info>> {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], {
    cwd: process.cwd(),
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = stopper(child, exit, 5000);
  let timer: NodeJS.Timeout | undefined;
  try {
    const info = await Promise.race([
      new Promise<Info>((resolve) => {
        let out = '';
        const onData = (chunk: Buffer) => {
          out += chunk.toString();
          const line = out.split('\n').find((l) => l.startsWith('{'));
          if (line === undefined || !out.includes('\n')) return;
          child.stdout.off('data', onData);
          // Anything printed later is not read; draining it keeps the pipe from filling up.
          child.stdout.resume();
          resolve(JSON.parse(line) as Info);
        };
        child.stdout.on('data', onData);
      }),
      exit.then(() => {
        throw new Error(`child exited before it was ready: ${stderr}`);
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`child not ready within ${readyTimeoutMs} ms: ${stderr}`)),
          readyTimeoutMs,
        );
      }),
    ]);
    return { pid: child.pid ?? 0, info, stop };
  } catch (error) {
    await stop();
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** The fake Slack Web API in a child process: fleetbot's answers are handled off the client's event loop. */
export function startFakeSlackChild(): Promise<NodeChild<{ apiUrl: string; responseUrl: string }>> {
  return startNodeChild(`
    import { startFakeSlack } from './test/peers/slack-api.ts';
    const slack = await startFakeSlack();
    // What fleetbot posts is not kept: a long run would otherwise hold every call in memory.
    setInterval(() => slack.reset(), 1000).unref();
    console.log(JSON.stringify({ apiUrl: slack.apiUrl, responseUrl: slack.responseUrl('bench') }));
    process.once('SIGTERM', () => slack.close().then(() => process.exit(0)));
  `);
}
