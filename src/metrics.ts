import type { Job, Worker } from 'bullmq';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Role } from './core/caller.js';
import type { RefusalReason } from './core/command-limits.js';

/**
 * Prometheus metrics. Every call makes its own registry (never prom-client's global one), so
 * tests and several roles in one process never register a name twice.
 *
 * Counters live in the process that does the work: run the roles in one process, or scrape each
 * process that runs a worker or bot, to see them all. Job counts and instances are read on
 * scrape, so any dashboard process reports them for the whole fleet.
 */

export type AwsOutcome = 'ok' | 'throttled' | 'error';
export type ChatAction = 'sent' | 'edited' | 'deleted';
export type JobOutcome = 'completed' | 'failed';

/** What a chat adapter counts. */
export type ChatMeter = Pick<Metrics, 'chatMessage' | 'chatRateLimited'> &
  Partial<Pick<Metrics, 'chatDuplicateDropped'>>;

/** What the job gauge needs from a queue; a BullMQ `Queue` fits. */
export interface CountedQueue {
  readonly name: string;
  getJobCounts(): Promise<Record<string, number>>;
}

export interface Metrics {
  readonly registry: Registry;
  /** Prometheus text exposition of everything, reading job counts and instances first. */
  scrape(): Promise<{ contentType: string; body: string }>;
  jobFinished(labels: { queue: string; name: string; outcome: JobOutcome }, seconds: number): void;
  awsCall(labels: { service: string; operation: string; outcome: AwsOutcome }): void;
  chatMessage(platform: string, action: ChatAction): void;
  chatRateLimited(platform: string): void;
  /** An update delivered again (same update id) and dropped unhandled. */
  chatDuplicateDropped(platform: string): void;
  secretStored(kind: string): void;
  /** A chat command refused before it ran: by role, or by a member's limits (src/core/command-limits.ts). */
  commandRefused(reason: RefusalReason, role: Role): void;
  /** Queues whose counts `fleetbot_jobs` reports on each scrape. */
  observeQueues(queues: readonly CountedQueue[]): void;
  /** Where `fleetbot_instances` comes from; one EC2 listing serves every scrape for `ttlMs`. */
  observeInstances(
    list: () => Promise<readonly { state: string }[]>,
    options?: { ttlMs?: number; now?: () => number },
  ): void;
}

/** Instance states are always reported, so an empty state reads 0 rather than vanishing. */
const instanceStates = ['pending', 'running', 'stopping', 'stopped', 'shutting-down', 'terminated'];

// From seconds (a ping) to hours (a rollout over a large fleet).
const jobDurationBuckets = [0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200];

export function createMetrics(): Metrics {
  const registry = new Registry();
  const registers = [registry];
  let queues: readonly CountedQueue[] = [];
  let instances: (() => Promise<readonly { state: string }[]>) | undefined;

  const collectErrors = new Counter({
    name: 'fleetbot_metrics_collect_errors_total',
    help: 'Scrapes where a gauge could not read its source (Redis or EC2); that gauge is left empty.',
    labelNames: ['source'] as const,
    registers,
  });
  const jobs = new Gauge({
    name: 'fleetbot_jobs',
    help: 'Jobs per queue and state, read from Redis on scrape.',
    labelNames: ['queue', 'state'] as const,
    registers,
    async collect() {
      jobs.reset();
      try {
        const counts = await Promise.all(queues.map(async (q) => [q.name, await q.getJobCounts()] as const));
        for (const [queue, byState] of counts)
          for (const [state, count] of Object.entries(byState)) jobs.set({ queue, state }, count);
      } catch {
        collectErrors.inc({ source: 'redis' });
      }
    },
  });
  const instanceGauge = new Gauge({
    name: 'fleetbot_instances',
    help: 'Fleet instances per state, read from EC2 at most every 30 s.',
    labelNames: ['state'] as const,
    registers,
    async collect() {
      instanceGauge.reset();
      if (!instances) return;
      try {
        const list = await instances();
        for (const state of instanceStates) instanceGauge.set({ state }, 0);
        for (const i of list) instanceGauge.inc({ state: i.state });
      } catch {
        collectErrors.inc({ source: 'ec2' });
      }
    },
  });
  const counted = countedMetrics(registers);

  return {
    registry,
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
    jobFinished(labels, seconds) {
      counted.jobDuration.observe({ ...labels, name: boundedName(labels.name) }, Math.max(0, seconds));
    },
    awsCall(labels) {
      counted.awsCalls.inc(labels);
    },
    chatMessage(platform, action) {
      counted.chatMessages.inc({ platform, action });
    },
    chatRateLimited(platform) {
      counted.chatRateLimited.inc({ platform });
    },
    chatDuplicateDropped(platform) {
      counted.chatDuplicates.inc({ platform });
    },
    secretStored(kind) {
      counted.secretsStored.inc({ kind });
    },
    commandRefused(reason, role) {
      counted.commandsRefused.inc({ reason, role });
    },
    observeQueues(list) {
      queues = list;
    },
    observeInstances(list, options = {}) {
      instances = cached(list, options.ttlMs ?? 30_000, options.now ?? Date.now);
    },
  };
}

/** Metrics this process counts as things happen (the gauges read their sources on scrape instead). */
function countedMetrics(registers: Registry[]) {
  return {
    jobDuration: new Histogram({
      name: 'fleetbot_job_duration_seconds',
      help: 'How long one attempt of a job ran, by queue, job name and outcome.',
      labelNames: ['queue', 'name', 'outcome'] as const,
      buckets: jobDurationBuckets,
      registers,
    }),
    awsCalls: new Counter({
      name: 'fleetbot_aws_calls_total',
      help: 'AWS API calls by final outcome, after the SDK retries.',
      labelNames: ['service', 'operation', 'outcome'] as const,
      registers,
    }),
    chatMessages: new Counter({
      name: 'fleetbot_chat_messages_total',
      help: 'Chat messages fleetbot sent, edited or deleted.',
      labelNames: ['platform', 'action'] as const,
      registers,
    }),
    chatRateLimited: new Counter({
      name: 'fleetbot_chat_rate_limited_total',
      help: 'Chat API calls answered with 429.',
      labelNames: ['platform'] as const,
      registers,
    }),
    chatDuplicates: new Counter({
      name: 'fleetbot_chat_duplicate_updates_total',
      help: 'Chat updates delivered again with an id already handled, dropped without effect.',
      labelNames: ['platform'] as const,
      registers,
    }),
    secretsStored: new Counter({
      name: 'fleetbot_secrets_stored_total',
      help: 'Secrets written to SSM Parameter Store, by kind (never the value).',
      labelNames: ['kind'] as const,
      registers,
    }),
    commandsRefused: new Counter({
      name: 'fleetbot_commands_refused_total',
      help: 'Chat commands refused before they ran, by reason (role, unknown to a guest, or a member limit) and caller role.',
      labelNames: ['reason', 'role'] as const,
      registers,
    }),
  };
}

/** Job names become label values; anything odd is folded so the series count stays bounded. */
function boundedName(name: string): string {
  return /^[a-z][a-z0-9-]{0,31}$/.test(name) ? name : 'other';
}

function cached<T>(load: () => Promise<T>, ttlMs: number, now: () => number): () => Promise<T> {
  let entry: { at: number; value: Promise<T> } | undefined;
  return () => {
    if (!entry || now() - entry.at >= ttlMs) {
      const value = load();
      const fresh = { at: now(), value };
      entry = fresh;
      // A failed listing must not be served for the whole TTL.
      value.catch(() => {
        if (entry === fresh) entry = undefined;
      });
    }
    return entry.value;
  };
}

/** Records the duration of every finished attempt of a BullMQ worker. */
export function watchWorker(metrics: Metrics, worker: Worker, now: () => number = Date.now): void {
  const record = (job: Job | undefined, outcome: JobOutcome) => {
    if (!job) return;
    const end = job.finishedOn ?? now();
    const start = job.processedOn ?? end;
    metrics.jobFinished({ queue: worker.name, name: job.name, outcome }, (end - start) / 1000);
  };
  worker.on('completed', (job) => record(job, 'completed'));
  worker.on('failed', (job) => record(job, 'failed'));
}
