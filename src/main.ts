import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import type { DestinationStream } from 'pino';
import { closeAwsClients, createAwsServices, openAwsClients } from './aws/services.js';
import type { ConsoleAdapter } from './bot/console.js';
import {
  type Config,
  ConfigError,
  type Env,
  loadConfig,
  type ProcessRole,
  parseRoles,
  type RedisSettings,
  roleUsage,
} from './config.js';
import { clearHeartbeat, heartbeatEnvKey, startHeartbeat } from './heartbeat.js';
import { createLogger, type Logger } from './log.js';
import { createMetrics } from './metrics.js';
import { type ConsoleChat, startBotRole } from './roles/bot.js';
import { createRoleContext, runStops, type StartedRole } from './roles/context.js';
import { startDashboardRole } from './roles/dashboard.js';
import { startWorkerRole } from './roles/worker.js';
import { keepReconnecting, openRedis, type RedisClient, type RedisUse, watchRedis } from './store/redis.js';

/**
 * The composition root: the only module that reads the environment and opens connections (Redis,
 * the SDK's clients). It starts the roles it is given (src/roles/); they receive what they need.
 */

export interface MainOptions {
  /** Run the console chat on these streams (the local sandbox). */
  console?: ConsoleChat;
  logDestination?: DestinationStream;
}

export interface Running {
  config: Config;
  log: Logger;
  console?: ConsoleAdapter;
  /** Ports actually bound, for callers that configured port 0. */
  ports: { slack?: number; telegramWebhook?: number; dashboard?: number };
  stop(): Promise<void>;
}

export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/** `--role bot,worker` (or `--role=…`); other arguments are not fleetbot's to judge. */
export function parseRoleFlag(argv: readonly string[]): readonly ProcessRole[] | undefined {
  const { values } = parseArgs({
    args: [...argv],
    options: { role: { type: 'string' } },
    strict: false,
    allowPositionals: true,
  });
  if (values.role === undefined) return undefined;
  const parsed = typeof values.role === 'string' ? parseRoles(values.role) : undefined;
  if (!parsed) throw new StartupError(`--role must be ${roleUsage}`);
  return parsed;
}

export async function main(env: Env, argv: readonly string[], options: MainOptions = {}): Promise<Running> {
  const config = loadConfig(env, { roles: parseRoleFlag(argv), console: Boolean(options.console) });
  const log = createLogger(config.logLevel, options.logDestination);
  const runs = (r: ProcessRole) => config.roles.includes(r);
  // Chat handlers and the dashboard fail fast while Redis is away; workers wait for it (src/store/redis.ts).
  const requestsRedis = await connectRedis(config.redis, 'requests', log);
  const jobsRedis = runs('worker')
    ? await connectRedis(config.redis, 'jobs', log).catch((error: unknown) => {
        requestsRedis.disconnect();
        throw error;
      })
    : undefined;
  const connections = jobsRedis ? [requestsRedis, jobsRedis] : [requestsRedis];
  const metrics = createMetrics();
  const awsClients = openAwsClients(config, metrics);
  const ctx = createRoleContext({
    config,
    log,
    metrics,
    aws: createAwsServices(awsClients, config),
    redis: requestsRedis,
  });
  // Stopped in this order: chat input first, then workers drain, then the dashboard.
  const started: StartedRole[] = [];
  const ports: Running['ports'] = {};
  let consoleAdapter: ConsoleAdapter | undefined;
  try {
    if (runs('bot')) {
      const bot = await startBotRole(ctx, options.console);
      started.push(bot);
      Object.assign(ports, bot.ports);
      consoleAdapter = bot.console;
    }
    if (jobsRedis) started.push(await startWorkerRole(ctx, jobsRedis, consoleAdapter?.outbox));
    if (runs('dashboard')) {
      const dashboard = await startDashboardRole(ctx);
      started.push(dashboard);
      ports.dashboard = dashboard.port;
    }
  } catch (error) {
    await runStops(
      started.map((r) => () => r.stop()),
      log,
    );
    for (const connection of connections) connection.disconnect();
    closeAwsClients(awsClients);
    throw error;
  }
  log.info({ roles: config.roles, ports }, 'fleetbot started');

  let stopping: Promise<void> | undefined;
  return {
    config,
    log,
    console: consoleAdapter,
    ports,
    stop() {
      stopping ??= (async () => {
        await runStops(
          started.map((r) => () => r.stop()),
          log,
        );
        for (const connection of connections) await connection.quit().catch(() => connection.disconnect());
        closeAwsClients(awsClients);
        log.info('fleetbot stopped');
      })();
      return stopping;
    },
  };
}

async function connectRedis(settings: RedisSettings, use: RedisUse, log: Logger): Promise<RedisClient> {
  const tlsCa = settings.tlsCaFile ? readTlsCa(settings.tlsCaFile) : undefined;
  // A failed first connect must not retry forever: the process exits and says how to start Redis.
  const redis = openRedis(settings, use, tlsCa);
  // The StartupError below reports a failed first connect; ioredis would also print each attempt.
  let failure = '';
  const quiet = (err: Error & { lastNodeError?: Error }) => {
    // A cluster only says "Failed to refresh slots cache."; its last node's error says why (such as
    // WRONGPASS), which is what the person starting fleetbot must fix.
    failure = (err.lastNodeError ?? err).message.replace(/\.$/, '');
  };
  redis.on('error', quiet);
  try {
    await redis.connect();
    await redis.ping();
  } catch (error) {
    redis.disconnect();
    const where = settings.nodes.map((n) => `${n.host}:${n.port}`).join(', ');
    const reason = failure || (error instanceof Error ? error.message : String(error));
    throw new StartupError(
      `Redis does not answer at ${where} (REDIS_URL). ` +
        (settings.cluster || settings.tls
          ? `It said: ${reason}. Check the address, the password (REDIS_PASSWORD) and, with a private CA, REDIS_TLS_CA_FILE.`
          : 'Start one with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379'),
    );
  }
  // BullMQ's workers duplicate this connection with these options. A lazy duplicate connects once,
  // when first awaited: if Redis is away at that moment its worker stays broken for good, so
  // duplicates connect on their own and keep retrying like this one.
  keepReconnecting(redis);
  redis.off('error', quiet);
  watchRedis(redis, log.child({ redis: use }));
  return redis;
}

function readTlsCa(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new StartupError(
      `REDIS_TLS_CA_FILE: cannot read ${file} (${(error as NodeJS.ErrnoException).code})`,
    );
  }
}

/** How long an uncaught exception waits for its log line to reach stdout before the process exits anyway. */
const fatalFlushMs = 2000;

/**
 * Process-wide last resorts, so nothing ends the process, or fails, without a log line. `currentLog`
 * is read when something happens: the startup logger until main has its own.
 */
export function installCrashHandlers(currentLog: () => Logger): void {
  // After an uncaught exception the process is in a state nobody planned for: log it, let the line
  // reach stdout, exit 1 for the supervisor to restart us. No graceful stop: it would run on that
  // broken state. Nothing is lost for good: jobs are resumed from their recorded phase by another
  // worker once their lock expires (as after SIGKILL), and an unanswered webhook is redelivered.
  process.on('uncaughtException', (error, origin) => {
    const log = currentLog();
    log.fatal({ err: error, origin }, 'uncaught exception; exiting');
    setTimeout(() => process.exit(1), fatalFlushMs);
    log.flush(() => process.exit(1));
  });
  // An unhandled rejection is logged and the process stays up. Every long-running loop (polling,
  // BullMQ workers, Redis connections, HTTP servers) handles its own errors, so a rejection nobody
  // awaited belongs to one update, request or job whose work has already failed, and this line is
  // what keeps that from passing silently. Exiting would not bring that work back; it would abort
  // every other update and job in flight in every role of this process, including webhook updates
  // Telegram was already answered for and will never send again.
  process.on('unhandledRejection', (reason) => {
    currentLog().error({ err: reason }, 'unhandled promise rejection; the work it belonged to failed');
  });
}

/** Runs main as a process: prints startup errors without stack traces and exits cleanly on signals. */
export async function runProcess(
  env: Env,
  argv: readonly string[],
  options: MainOptions = {},
  /** Runs after fleetbot stopped, and also when it failed to start (the sandbox stops its peers here). */
  cleanup: () => Promise<void> = async () => {},
): Promise<void> {
  let running: Running | undefined;
  const startupLog = createLogger('info', options.logDestination);
  installCrashHandlers(() => running?.log ?? startupLog);
  // The container's health check reads this heartbeat (src/heartbeat.ts); none without the key.
  clearHeartbeat(env[heartbeatEnvKey]);
  try {
    running = await main(env, argv, options);
  } catch (error) {
    await cleanup();
    if (error instanceof ConfigError || error instanceof StartupError) {
      process.stderr.write(`fleetbot: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const heartbeat = startHeartbeat(env[heartbeatEnvKey], running, running.log);
  const shutdown = async (reason: string) => {
    running.log.info({ reason }, 'shutting down');
    // A second Ctrl-C while draining means "now".
    process.once('SIGINT', () => process.exit(1));
    await heartbeat.stop();
    await running.stop();
    await cleanup();
    process.exit(0);
  };
  process.once('SIGINT', () => void shutdown('SIGINT'));
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  if (running.console) {
    await running.console.closed;
    await shutdown('console closed');
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  await runProcess(process.env, process.argv.slice(2));
}
