/**
 * What the chat-facing scenarios share: moto, the AWS simulator in front of it, the fake Telegram
 * Bot API, and fleetbot itself run as its own process (bot and worker roles, `src/main.ts`) pointed
 * at all three, as an operator would run it. Its own process, so that fleetbot's event loop is not
 * the one serving the simulator and the fake Bot API: the times measured are fleetbot's. Members are
 * Telegram users on the allow-list (TELEGRAM_ALLOWED_USER_IDS), as if already invited.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeParametersCommand, SSMClient } from '@aws-sdk/client-ssm';
import type { Redis } from 'ioredis';
import { type Config, type Env, loadConfig } from '../src/config.js';
import { awsEnv, testAccountId, withAccount } from '../test/peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../test/peers/aws-simulator.js';
import { type MotoServer, startMoto } from '../test/peers/moto.js';
import { type FakeOpenAi, startFakeOpenAi } from '../test/peers/openai-api.js';
import { dropPrefix, testRedis, testRedisUrl, uniquePrefix } from '../test/peers/redis.js';
import { type FakeTelegram, startFakeTelegram } from '../test/peers/telegram-api.js';
import {
  type FleetbotProcess,
  type LogEntry,
  logEntries,
  startProcess,
} from '../test/support/fleetbot-process.js';
import { seconds } from './measure.js';

const region = 'us-east-1';
const root = fileURLToPath(new URL('..', import.meta.url));
/** fleetbot's own bot; any token of the right shape, registered with the fake. */
export const fleetbotToken = `7600000006:${'B'.repeat(35)}`;

export interface ChatStage {
  accountId: string;
  moto: MotoServer;
  simulator: AwsSimulator;
  telegram: FakeTelegram;
  openAi?: FakeOpenAi;
  /** The bench's own clients, in the same account as fleetbot, for setup and for reading back. */
  ec2: EC2Client;
  ssm: SSMClient;
  /** fleetbot's configuration, read from the same environment its process was given. */
  config: Config;
  prefix: string;
  fleetbot: FleetbotProcess;
  /** fleetbot's JSON log so far. */
  logs(): LogEntry[];
  /** Stops fleetbot, the peers and moto, and drops the Redis prefix; safe to call twice. */
  close(): Promise<void>;
}

export interface StageOptions {
  label: string;
  members: readonly number[];
  /** Configuration keys for fleetbot beyond the wiring (the service's defaults otherwise). */
  env?: Env;
  /** Start the fake OpenAI API, so keys are checked live as in production. */
  openAi?: boolean;
  say: (line: string) => void;
}

/** Starts every peer, then fleetbot, and waits until fleetbot polls Telegram. */
export async function openStage(options: StageOptions): Promise<ChatStage> {
  const { say } = options;
  const closers: (() => Promise<void>)[] = [];
  const redis: Redis = testRedis();
  const prefix = uniquePrefix(options.label);
  closers.push(async () => {
    await dropPrefix(redis, prefix);
    await redis.quit();
  });
  const close = async () => {
    for (const closer of closers.splice(0).reverse())
      await closer().catch((error: unknown) => say(`cleanup: ${String(error)}`));
  };
  try {
    const moto = await startMoto({ say });
    closers.push(() => moto.stop());
    // A fresh account: fleetbot sends no account header, so the simulator puts it in this one.
    const accountId = testAccountId();
    const simulator = await startAwsSimulator({ motoUrl: moto.url, defaultAccountId: accountId });
    closers.push(() => simulator.close());
    const telegram = await startFakeTelegram();
    closers.push(() => telegram.close());
    telegram.addBot(fleetbotToken, { username: 'fleetbot_bench_bot' });
    const openAi = options.openAi ? await startFakeOpenAi() : undefined;
    if (openAi) closers.push(() => openAi.close());

    const env: Record<string, string> = {
      ...awsEnv(simulator.url),
      REDIS_URL: testRedisUrl,
      REDIS_PREFIX: prefix,
      TELEGRAM_BOT_TOKEN: fleetbotToken,
      TELEGRAM_API_ROOT: telegram.apiRoot,
      TELEGRAM_ALLOWED_USER_IDS: options.members.join(','),
      INSTANCE_AMI_ID: 'ami-12c6146b',
      // Debug adds only the pacers' slots (src/store/rate-limits.ts): what fleetbot scheduled.
      LOG_LEVEL: 'debug',
      ...(openAi ? { OPENAI_BASE_URL: openAi.url } : {}),
      ...definedOnly(options.env ?? {}),
    };
    const config = loadConfig(env, { roles: ['bot', 'worker'] });

    const clientOptions = {
      region,
      endpoint: simulator.url,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    };
    const ec2 = withAccount(new EC2Client(clientOptions), accountId);
    const ssm = withAccount(new SSMClient(clientOptions), accountId);
    closers.push(async () => {
      ec2.destroy();
      ssm.destroy();
    });
    // moto loads a service's backend on its first call (seconds for EC2, with its AMI catalogue):
    // paid here, not by the first member's message.
    const warmStarted = performance.now();
    await ec2.send(new DescribeInstancesCommand({}));
    await ssm.send(new DescribeParametersCommand({}));
    say(`moto up; EC2 and SSM backends loaded in ${seconds(performance.now() - warmStarted)} s`);

    const started = performance.now();
    const fleetbot = startProcess(
      [process.execPath, '--import', 'tsx', 'src/main.ts', '--role', 'bot,worker'],
      { env: { PATH: process.env.PATH ?? '', ...env }, cwd: root },
    );
    closers.push(() => stopProcess(fleetbot));
    await waitForEntry(fleetbot, (e) => e.msg === 'telegram polling', 60_000);
    // At start the bot sets each member's command menu, one call at a time; let that finish first so
    // it is not counted in the burst.
    await settle(
      () => telegram.calls(fleetbotToken, 'setMyCommands').length > options.members.length,
      20_000,
    );
    say(
      `fleetbot (bot + worker, pid ${fleetbot.child.pid}) polling after ${seconds(performance.now() - started)} s`,
    );

    return {
      accountId,
      moto,
      simulator,
      telegram,
      openAi,
      ec2,
      ssm,
      config,
      prefix,
      fleetbot,
      logs: () => logEntries(fleetbot),
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** SIGTERM, as an operator stops it (workers drain for SHUTDOWN_GRACE_MS); SIGKILL if it hangs. */
async function stopProcess(p: FleetbotProcess): Promise<void> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), 20_000);
  await p.exit;
  clearTimeout(timer);
}

function waitForEntry(p: FleetbotProcess, match: (e: LogEntry) => boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (logEntries(p).some(match)) done(resolve);
    };
    const exited = () => done(() => reject(new Error(`fleetbot exited: ${p.err().slice(-2000)}`)));
    const timer = setTimeout(
      () =>
        done(() => reject(new Error(`fleetbot not polling after ${timeoutMs} ms: ${p.out().slice(-2000)}`))),
      timeoutMs,
    );
    const done = (settleWith: () => void) => {
      clearTimeout(timer);
      p.child.stdout.off('data', check);
      p.child.off('exit', exited);
      settleWith();
    };
    p.child.stdout.on('data', check);
    p.child.once('exit', exited);
    check();
  });
}

/** Waits until `ready()` or the timeout, whichever comes first; never fails. */
export async function settle(ready: () => boolean, timeoutMs: number, everyMs = 200): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (ready()) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Member ids from `base`: Telegram user ids are plain numbers. */
export function memberIds(count: number, base: number): number[] {
  return Array.from({ length: count }, (_, i) => base + i);
}

/** Runs `work` over `items` with at most `parallel` in flight. */
export async function inParallel<T>(
  items: readonly T[],
  parallel: number,
  work: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, items.length) }, async () => {
      for (let i = next++; i < items.length; i = next++) await work(items[i] as T);
    }),
  );
}

/** The largest value; undefined for none (Math.max would say -Infinity). */
export function maxOf(values: readonly number[]): number | undefined {
  return values.length === 0 ? undefined : Math.max(...values);
}

/** Pacer slots fleetbot logged for one key (`{ pacer, slotAt }` at debug), in time order. */
export function pacerSlots(logs: readonly LogEntry[], key: string): number[] {
  return logs
    .filter((e) => e.pacer === key && typeof e.slotAt === 'number')
    .map((e) => e.slotAt as number)
    .sort((a, b) => a - b);
}

/** fleetbot's warnings and errors (pino levels 40 and up), without pino's own fields, shortened for a note. */
export function warningsIn(logs: readonly LogEntry[]): string[] {
  return logs
    .filter((e) => e.level >= 40)
    .map(({ time: _t, pid: _p, hostname: _h, ...rest }) => JSON.stringify(rest).slice(0, 300));
}

/**
 * The longest this process's event loop was held up while running: the simulator and the fake Bot
 * API stamp arrival times on it, so a stall here bunches arrivals that left fleetbot well spaced.
 */
export function stallMonitor(): { stop(): number } {
  const histogram = monitorEventLoopDelay({ resolution: 20 });
  histogram.enable();
  return {
    stop() {
      histogram.disable();
      return histogram.max / 1e6;
    },
  };
}

export const ms = (value: number | undefined) => (value === undefined ? '-' : `${Math.round(value)} ms`);
export const secs = (value: number | undefined) => (value === undefined ? '-' : `${seconds(value)} s`);

function definedOnly(env: Env): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter((e): e is [string, string] => e[1] !== undefined));
}
