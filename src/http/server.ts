import { timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import { Queue } from 'bullmq';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { FleetInstance } from '../core/ports/fleet.js';
import { queueNames } from '../jobs/queues.js';
import type { Logger } from '../log.js';
import { createMetrics, type Metrics } from '../metrics.js';
import { logErrors, type RedisClient } from '../store/redis.js';
import { readEvictionPolicy } from '../store/redis-policy.js';
import {
  type AuditRecord,
  auditRows,
  type FleetJob,
  type FleetPageData,
  fleetPageCsp,
  renderFleetPage,
} from './fleet-page.js';
import { jobDashboard } from './job-dashboard.js';

export interface HttpOptions {
  host: string;
  port: number;
  user: string;
  password?: string;
  redis: RedisClient;
  /** Key prefix of every queue (REDIS_PREFIX). */
  prefix: string;
  probeAws(): Promise<void>;
  listInstances(): Promise<FleetInstance[]>;
  /** Newest first; the page shows the first 50. */
  recentAudit(): Promise<AuditRecord[]>;
  /** Lets bull-board retry, remove and add jobs; read-only when false or absent. */
  allowActions?: boolean;
  /** Serves /metrics without basic auth, for a scraper inside a private network. */
  metricsPublic?: boolean;
  /** How long each /readyz check may take before it counts as failed; 5 s, an ALB's default timeout. */
  readyTimeoutMs?: number;
  /** How long one /readyz check serves every probe after it (default readyCacheMs); tests pass their own. */
  readyCacheMs?: number;
  /** The clock the /readyz cache reads; tests move it instead of waiting. */
  now?: () => number;
  /** Shared with the other roles of this process so their counters show up here; made when absent. */
  metrics?: Metrics;
  log?: Logger;
}

export interface HttpServer {
  port: number;
  metrics: Metrics;
  close(): Promise<void>;
}

const jobsPath = '/jobs';
/**
 * Several load balancers and probes ask /readyz every few seconds each, and every answer costs Redis
 * and AWS calls: one check serves all probes for this long, and concurrent probes share one in flight.
 */
export const readyCacheMs = 2000;
const jobsCsp = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/**
 * The operator-facing HTTP role. Health endpoints are open so load balancers can use them;
 * every other path needs basic auth, and without a password the server does not start at all.
 */
export async function startHttp(options: HttpOptions): Promise<HttpServer> {
  if (!options.password) throw new Error('the dashboard needs a password (DASHBOARD_PASSWORD)');
  const queues = dashboardQueues(options);
  const metrics = options.metrics ?? createMetrics();
  metrics.observeQueues(queues);
  metrics.observeInstances(options.listInstances);

  const app = express();
  app.disable('x-powered-by');

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  const readiness = sharedFor(options.readyCacheMs ?? readyCacheMs, options.now ?? monotonicNow, () =>
    checkReadiness(options),
  );
  app.get('/readyz', async (_req, res) => {
    const { ready, checks } = await readiness();
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks });
  });

  const auth = requireAuth({ user: options.user, password: options.password });
  const metricsRoute = async (_req: Request, res: Response) => {
    const { contentType, body } = await metrics.scrape();
    res.type(contentType).send(body);
  };
  if (options.metricsPublic) app.get('/metrics', metricsRoute);
  app.use(auth);
  app.use(sameOriginWrites);
  app.use((req, res, next) => {
    res.set({ 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' });
    // Fleet and job data must not linger in a shared browser cache; bull-board's hashed bundles may.
    if (!req.path.startsWith(`${jobsPath}/static/`)) res.set('cache-control', 'no-store');
    next();
  });
  if (!options.metricsPublic) app.get('/metrics', metricsRoute);

  app.get('/fleet', async (_req, res) => {
    res
      .status(200)
      .set('content-security-policy', fleetPageCsp)
      .type('html')
      .send(renderFleetPage(await fleetPageData(options, queues)));
  });

  app.use(jobsPath, (_req, res, next) => {
    // bull-board runs only its own bundles (its config is an inert JSON block); it needs inline
    // style attributes, and the font it would fetch from Google is refused on purpose.
    res.set('content-security-policy', jobsCsp);
    next();
  });
  app.use(
    jobsPath,
    jobDashboard(queues, { basePath: jobsPath, allowActions: options.allowActions ?? false }),
  );

  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    options.log?.error({ err: String(err) }, 'dashboard request failed');
    if (!res.headersSent) res.status(500).json({ error: 'internal error' });
  });

  const server = createServer(app);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, resolve);
    });
  } catch (error) {
    await Promise.all(queues.map((q) => q.close()));
    throw error;
  }
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : options.port,
    metrics,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await Promise.all(queues.map((q) => q.close()));
    },
  };
}

/** The dashboard's view of every queue; shares the role's connection. */
function dashboardQueues(options: HttpOptions): Queue[] {
  return Object.values(queueNames).map((name) => {
    // Only read here (and written by bull-board when actions are allowed).
    const queue = new Queue(name, { connection: options.redis, prefix: options.prefix });
    // Without a listener BullMQ prints each error, stack and all, to the console.
    queue.on(
      'error',
      options.log ? logErrors(options.log.child({ queue: name }), 'dashboard queue') : () => {},
    );
    return queue;
  });
}

/** One /readyz check of Redis, AWS and Redis's eviction policy; never rejects. */
async function checkReadiness(options: HttpOptions) {
  // A server that accepts connections but does not answer must not hold the probe: every check gets a deadline.
  const readyTimeoutMs = options.readyTimeoutMs ?? 5000;
  const [redis, aws, redisMaxmemoryPolicy] = await Promise.all([
    within(readyTimeoutMs, options.redis.ping()).then(
      () => 'ok',
      () => 'unreachable',
    ),
    within(readyTimeoutMs, options.probeAws()).then(
      () => 'ok',
      () => 'unreachable',
    ),
    within(readyTimeoutMs, readEvictionPolicy(options.redis)).catch(() => 'unknown'),
  ]);
  // `unknown` (CONFIG refused, as on managed Redis) does not block readiness: the policy is then
  // set outside Redis, and the worker logs that it could not check it.
  const ready = redis === 'ok' && aws === 'ok' && ['noeviction', 'unknown'].includes(redisMaxmemoryPolicy);
  return { ready, checks: { redis, aws, redisMaxmemoryPolicy } };
}

/** What /fleet shows; a source that fails is shown as unavailable, the others still are. */
async function fleetPageData(options: HttpOptions, queues: readonly Queue[]): Promise<FleetPageData> {
  const [instances, jobs, audit] = await Promise.all([
    settle(options.listInstances(), 'ec2', options.log),
    settle(runningJobs(queues), 'redis', options.log),
    settle(
      options.recentAudit().then((a) => a.slice(0, auditRows)),
      'audit',
      options.log,
    ),
  ]);
  return { instances, jobs, audit, generatedAt: new Date() };
}

function requireAuth(expected: { user: string; password: string }) {
  return (req: Request, res: Response, next: NextFunction) => {
    if (authorized(req.headers.authorization, expected)) return next();
    res.status(401).set('www-authenticate', 'Basic realm="fleetbot", charset="UTF-8"').end();
  };
}

/**
 * Browsers send basic-auth credentials along with cross-site requests; a write whose Origin is
 * another site is refused so a page elsewhere cannot drive bull-board's actions.
 */
function sameOriginWrites(req: Request, res: Response, next: NextFunction) {
  const origin = req.headers.origin;
  if (req.method === 'GET' || req.method === 'HEAD' || !origin) return next();
  let host: string | undefined;
  try {
    host = new URL(origin).host;
  } catch {
    host = undefined;
  }
  if (host && host === req.headers.host) return next();
  res.status(403).json({ error: 'cross-origin request refused' });
}

async function runningJobs(queues: readonly Queue[]): Promise<FleetJob[]> {
  const perQueue = await Promise.all(
    queues.map(async (queue) => {
      const [active, waiting, delayed] = await Promise.all([
        queue.getJobs(['active'], 0, 99),
        queue.getJobs(['waiting', 'prioritized'], 0, 99),
        // Delayed jobs include attempts waiting out their backoff: still running, as far as an operator cares.
        queue.getJobs(['delayed'], 0, 99),
      ]);
      return [
        ...active.map((job) => ({ job, state: 'active' })),
        ...waiting.map((job) => ({ job, state: 'waiting' })),
        ...delayed.map((job) => ({ job, state: 'delayed' })),
      ].map(
        ({ job, state }): FleetJob => ({
          queue: queue.name,
          id: job.id ?? '',
          name: job.name,
          state,
          progress: job.progress,
          addedAt: job.timestamp,
        }),
      );
    }),
  );
  return perQueue.flat();
}

/**
 * `work` run at most once per `ttlMs`: callers meanwhile share the run in flight, then its result
 * until `ttlMs` after it settled. `work` must not reject.
 */
function sharedFor<T>(ttlMs: number, now: () => number, work: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  let last: { at: number; value: T } | undefined;
  return () => {
    if (last && now() - last.at < ttlMs) return Promise.resolve(last.value);
    inFlight ??= work()
      .then((value) => {
        last = { at: now(), value };
        return value;
      })
      .finally(() => {
        inFlight = undefined;
      });
    return inFlight;
  };
}

/** Milliseconds that never run backwards: a wall clock set back would stretch the /readyz cache. */
const monotonicNow = () => performance.now();

function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

async function settle<T>(work: Promise<T>, source: string, log?: Logger): Promise<T | 'unavailable'> {
  try {
    return await work;
  } catch (err) {
    log?.warn({ err: String(err), source }, 'fleet page source failed');
    return 'unavailable';
  }
}

export function authorized(
  header: string | undefined,
  expected: { user: string; password?: string },
): boolean {
  if (!expected.password || !header?.startsWith('Basic ')) return false;
  const given = Buffer.from(header.slice(6), 'base64');
  const wanted = Buffer.from(`${expected.user}:${expected.password}`);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}
