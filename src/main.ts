import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { Readable, Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { EC2Client } from '@aws-sdk/client-ec2';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { DestinationStream } from 'pino';
import { createFleet } from './aws/fleet.js';
import { createFleetView } from './aws/fleet-view.js';
import { createAwsProbe } from './aws/probe.js';
import { createRunCommand } from './aws/run-command.js';
import { openSecretStore } from './aws/secret-store.js';
import { createBot } from './bot/bot.js';
import { type ConsoleAdapter, type ConsoleIdentity, createConsoleAdapter } from './bot/console.js';
import { createSlackAdapter, slackClient, slackOutbox } from './bot/slack.js';
import { createTelegramAdapter, telegramApi, telegramOutbox } from './bot/telegram.js';
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
import { adminChannelsElsewhere, createRoleOf } from './core/caller.js';
import { clearHeartbeat, heartbeatEnvKey, startHeartbeat } from './heartbeat.js';
import { assertNoEviction } from './http/redis-policy.js';
import { startHttp } from './http/server.js';
import { createHealthPoller } from './jobs/health-poller.js';
import type { Outboxes } from './jobs/outboxes.js';
import { openQueues } from './jobs/queues.js';
import { startWorkers } from './jobs/worker.js';
import { createLogger, type Logger } from './log.js';
import { awsCallMetrics, createMetrics } from './metrics.js';
import { createAuditTrail } from './store/audit.js';
import { createMembers } from './store/members.js';
import { createPlans } from './store/plans.js';
import { createPollLease, telegramPollerKey } from './store/poll-lease.js';
import { createPacer, createSharedBudget, createWindowLimit } from './store/rate-limits.js';
import { keepReconnecting, openRedis, type RedisClient, type RedisUse, watchRedis } from './store/redis.js';
import { createSeenUpdates, slackReplayWindowSeconds } from './store/seen-updates.js';

/**
 * The composition root: the only module that reads the environment, opens Redis and builds SDK
 * clients. Everything below it receives what it needs as arguments.
 */

export interface MainOptions {
  /** Run the console chat on these streams (the local sandbox). */
  console?: { input: Readable; output: Writable; identity: ConsoleIdentity };
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

export function parseRoleFlag(argv: readonly string[]): readonly ProcessRole[] | undefined {
  const i = argv.findIndex((a) => a === '--role' || a.startsWith('--role='));
  if (i < 0) return undefined;
  const value = argv[i]?.includes('=') ? argv[i]?.split('=')[1] : argv[i + 1];
  const parsed = parseRoles(value ?? '');
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
  const where = { region: config.aws.region, endpoint: config.aws.endpoint };
  // The SDK's standard retries (jittered backoff, and a retry quota so a storm is not multiplied)
  // absorb a blip; jobs wait out anything longer themselves, for minutes (src/core/aws-wait.ts).
  const ec2 = new EC2Client({ ...where, retryMode: 'standard', maxAttempts: 3 });
  const ssm = new SSMClient({ ...where, retryMode: 'standard', maxAttempts: 3 });
  // Jobs' Run Command calls: every attempt must wait its turn at the shared SSM budget, which the
  // SDK's retries would skip, so the SDK never retries them and the jobs retry through the budget.
  const jobSsm = new SSMClient({ ...where, maxAttempts: 1 });
  const lambda = new LambdaClient({ ...where, retryMode: 'standard', maxAttempts: 3 });
  const secrets = openSecretStore(ssm, lambda, config.aws);
  const probeAws = createAwsProbe(ec2);
  const fleet = createFleet(ec2, { region: config.aws.region, env: config.env, ...config.instances });
  const runCommand = createRunCommand(ssm);
  // One for the bot and the dashboard alike, so a /fleet and the fleet page share a listing too.
  const fleetView = createFleetView(fleet, runCommand, { cacheMs: config.fleetCacheMs });
  const metrics = createMetrics();
  ec2.middlewareStack.use(awsCallMetrics(metrics));
  ssm.middlewareStack.use(awsCallMetrics(metrics));
  jobSsm.middlewareStack.use(awsCallMetrics(metrics));
  const members = createMembers(requestsRedis, config.redis.prefix);
  const auditTrail = createAuditTrail(requestsRedis, config.redis.prefix, config.auditRetention);
  const roleOf = createRoleOf(config.access, (userId) => members.isMember(userId));
  const stops: (() => Promise<void>)[] = [];
  const ports: Running['ports'] = {};
  let consoleAdapter: ConsoleAdapter | undefined;

  try {
    if (runs('bot')) {
      const botLog = log.child({ role: 'bot' });
      const queues = openQueues(requestsRedis, config.redis.prefix, botLog);
      stops.push(() => queues.close());
      const bot = createBot(
        config,
        { redis: requestsRedis, secrets, queues, members, fleet, fleetView, runCommand, auditTrail, metrics },
        botLog,
      );
      const dispatch = bot.dispatch;
      if (config.telegram) {
        const seen = createSeenUpdates(requestsRedis, config.redis.prefix);
        const telegramLog = log.child({ chat: 'telegram' });
        const telegram = createTelegramAdapter({
          ...config.telegram,
          roleOf,
          dispatch,
          meter: metrics,
          log: telegramLog,
          // Only one bot process polls at a time; the others take over when it stops or dies.
          pollLease: createPollLease(requestsRedis, {
            key: telegramPollerKey(config.redis.prefix),
            ttlMs: config.telegram.pollLeaseMs,
            log: telegramLog,
          }),
          firstDelivery: (updateId) => seen.first('telegram', updateId),
          onManagedBot: (event) => bot.onManagedBot(event),
          menus: bot.menus,
          memberIds: async () => [
            ...new Set([...config.access.telegramUserIds, ...(await members.list()).map((m) => m.userId)]),
          ],
        });
        await telegram.start();
        bot.settings.botUsername = telegram.bot.botInfo.username;
        bot.telegram.menus = telegram.menus;
        bot.telegram.managedBots = telegram.managedBots();
        ports.telegramWebhook = telegram.webhookPort();
        stops.unshift(() => telegram.stop());
      }
      if (config.slack) {
        const seen = createSeenUpdates(requestsRedis, config.redis.prefix);
        const slack = createSlackAdapter({
          ...config.slack,
          roleOf,
          adminChannels: (who) => adminChannelsElsewhere(config.access, who),
          firstDelivery: (requestId) => seen.first('slack', requestId, slackReplayWindowSeconds),
          editBudget: slackEditBudget(requestsRedis, config),
          dispatch,
          meter: metrics,
          log: log.child({ chat: 'slack' }),
        });
        await slack.start();
        ports.slack = slack.port();
        stops.unshift(() => slack.stop());
      }
      if (options.console) {
        const c = createConsoleAdapter({ ...options.console, roleOf, dispatch });
        consoleAdapter = c;
        stops.unshift(async () => c.close());
      }
    }
    // Open exactly when this process runs the worker role.
    if (jobsRedis) {
      // Every Redis use below belongs to jobs, which wait out an outage rather than fail.
      const redis = jobsRedis;
      const outboxes: Outboxes = {
        telegram:
          config.telegram &&
          telegramOutbox(telegramApi(config.telegram.token, config.telegram.apiRoot, metrics)),
        slack:
          config.slack &&
          slackOutbox(
            slackClient({
              token: config.slack.botToken,
              apiUrl: config.slack.apiUrl,
              meter: metrics,
              log: log.child({ chat: 'slack' }),
            }),
            metrics,
            config.slack.command,
          ),
        console: consoleAdapter?.outbox,
      };
      const workerLog = log.child({ role: 'worker' });
      const jobRunCommand = createRunCommand(jobSsm);
      // BullMQ loses jobs when Redis evicts keys: refuse to work on such a Redis.
      if ((await assertNoEviction(redis)) === 'unknown')
        workerLog.warn('could not read Redis maxmemory-policy (CONFIG refused); make sure it is noeviction');
      const plans = createPlans(redis, config.redis.prefix);
      const poller = createHealthPoller(fleet, config.provisioning.pollMs, workerLog);
      const workers = startWorkers(
        redis,
        { prefix: config.redis.prefix, jobLockMs: config.jobLockMs },
        {
          ping: { outboxes, probeAws, now: Date.now, workerName: hostname() },
          access: config.access,
          rollout: {
            fleet,
            runCommand: jobRunCommand,
            ssmBudget: createPacer(
              redis,
              `${config.redis.prefix}:pace:ssm`,
              config.rollout.ssmRequestsPerSecond,
              workerLog,
            ),
            editBudget: slackEditBudget(redis, config),
            isCancelled: (jobId) => plans.isCancelled(jobId),
            outboxes,
            settings: {
              pollMs: config.rollout.pollMs,
              commandTimeoutSeconds: config.rollout.commandTimeoutSeconds,
              deployDocument: config.rollout.deployDocument,
              editIntervalMs: 3000,
              awsWaitMs: config.rollout.awsWaitMs,
              planTtlMs: config.rollout.planTtlMs,
              deliveryWaitMs: config.rollout.deliveryWaitMs,
              listingLagMs: config.rollout.listingLagMs,
            },
            log: workerLog.child({ queue: 'rollout' }),
          },
          planExpiry: { plans, outboxes, editBudget: slackEditBudget(redis, config), log: workerLog },
          restart: {
            runCommand: jobRunCommand,
            outboxes,
            pollMs: config.provisioning.pollMs,
            // The restart document gives up after 900 s (infra/fleetbot.yaml); SSM decides first.
            timeoutMs: 960_000,
            now: Date.now,
            log: workerLog,
          },
          provision: {
            fleet,
            runCommand: jobRunCommand,
            secrets,
            poller,
            launchPacer: createPacer(
              redis,
              `${config.redis.prefix}:pace:run-instances`,
              config.provisioning.launchesPerSecond,
              workerLog,
            ),
            outboxes,
            settings: {
              ...config.provisioning,
              parameterPrefix: config.aws.parameterPrefix,
              serviceName: config.instances.serviceName,
              installCommand: config.instances.installCommand,
              version: config.instances.version,
              editIntervalMs: 3000,
            },
            log: workerLog,
          },
        },
        workerLog,
        metrics,
      );
      stops.push(async () => {
        await workers.close(config.shutdownGraceMs);
        poller.stop();
      });
    }
    if (runs('dashboard')) {
      const http = await startHttp({
        ...config.dashboard,
        redis: requestsRedis,
        prefix: config.redis.prefix,
        probeAws,
        listInstances: () => fleetView.instances(),
        recentAudit: () => auditTrail.recent(50),
        metrics,
        log: log.child({ role: 'dashboard' }),
      });
      ports.dashboard = http.port;
      stops.push(() => http.close());
    }
  } catch (error) {
    await runAll(stops, log);
    for (const connection of connections) connection.disconnect();
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
      // Chat input stops first (adapters were put at the front), then workers drain, then connections close.
      stopping ??= (async () => {
        await runAll(stops, log);
        for (const connection of connections) await connection.quit().catch(() => connection.disconnect());
        ec2.destroy();
        ssm.destroy();
        jobSsm.destroy();
        lambda.destroy();
        log.info('fleetbot stopped');
      })();
      return stopping;
    },
  };
}

/** Slack's chat.update limit is per workspace: every process's edits share one budget. */
function slackEditBudget(redis: RedisClient, config: Config) {
  return createSharedBudget(
    createWindowLimit(
      redis,
      `${config.redis.prefix}:budget:slack-update`,
      config.rollout.slackUpdatesPerMinute,
      60_000,
    ),
    'workspace',
  );
}

async function runAll(stops: (() => Promise<void>)[], log: Logger): Promise<void> {
  for (const stop of stops) {
    await stop().catch((err: unknown) => log.warn({ err: String(err) }, 'error while stopping'));
  }
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
