/**
 * One rollout of the `rollout` scenario, in a process of its own: fleetbot's side only (the real
 * fleet, Run Command client, Redis pacer, chat.update budget, event receiver and Redis fan-out), so
 * its RSS and event-loop delay are fleetbot's, not the simulator's. Started by bench/rollout.ts with
 * its task as JSON in argv; prints one JSON line with what it measured.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { EC2Client } from '@aws-sdk/client-ec2';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import { Redis } from 'ioredis';
import { createFleet } from '../src/aws/fleet.js';
import { receiveInvocationEvents } from '../src/aws/invocation-event-queue.js';
import { createRunCommand } from '../src/aws/run-command.js';
import { type Env, loadConfig } from '../src/config.js';
import type { RolloutPayload } from '../src/jobs/queues.js';
import { processRollout, type RolloutSummary } from '../src/jobs/rollout.js';
import { createLogger } from '../src/log.js';
import { createInvocationEventBus } from '../src/store/invocation-events.js';
import { newPlanId } from '../src/store/plans.js';
import { createPacer, createSharedBudget, createWindowLimit } from '../src/store/rate-limits.js';
import { withAccount } from '../test/peers/aws-account.js';
import { rssSampler } from './measure.js';

export interface RolloutTask {
  simulatorUrl: string;
  accountId: string;
  redisUrl: string;
  prefix: string;
  env?: Env;
  instances: number;
  concurrency: string;
  /** Set with completion events: the queue the simulator delivers them to. */
  queueUrl?: string;
}

export interface RolloutRun {
  summary: RolloutSummary;
  wallMs: number;
  /** Wall-clock times of the chat edits the rollout made. */
  edits: number[];
  batchRecords: number;
  rss: number;
  eventLoopP99Ms: number;
}

/** A hung rollout fails the bench instead of holding a CI job forever. */
const deadlineMs = 10 * 60_000;

async function run(task: RolloutTask): Promise<RolloutRun> {
  const config = loadConfig({ AWS_REGION: 'us-east-1', ...task.env }, { roles: ['worker'] });
  const where = {
    region: 'us-east-1',
    endpoint: task.simulatorUrl,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  const ec2 = withAccount(new EC2Client(where), task.accountId);
  const ssm = withAccount(new SSMClient({ ...where, maxAttempts: 1 }), task.accountId);
  const sqs = withAccount(new SQSClient(where), task.accountId);
  const redis = new Redis(task.redisUrl, { maxRetriesPerRequest: null });
  const log = createLogger('warn');
  const bus = createInvocationEventBus(redis, task.prefix, log);
  const queueUrl = task.queueUrl;
  const receiver =
    queueUrl && receiveInvocationEvents({ sqs, queueUrl, publish: (events) => bus.publish(events), log });
  const edits: number[] = [];
  let saved: RolloutPayload = {
    planId: newPlanId(),
    request: {
      operation: 'deploy',
      version: 'v9.9.9',
      reboot: 'never',
      targets: 'all',
      concurrency: task.concurrency,
      maxErrors: '0',
      canary: 0,
    },
    requestedBy: 'UBENCH',
    approvedBy: 'UBENCH',
    message: { platform: 'console', chatId: 'bench', messageId: '1' },
    startedAt: Date.now(),
  };
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const rss = rssSampler();
  loop.enable();
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const summary = await Promise.race([
      processRollout(
        {
          id: `rollout-${saved.planId}`,
          data: saved,
          updateData: async (data) => {
            saved = data;
          },
        },
        {
          fleet: createFleet(ec2, { region: 'us-east-1', env: config.env, ...config.instances }),
          runCommand: createRunCommand(ssm),
          ssmPacer: createPacer(redis, `${task.prefix}:pace:ssm`, config.rollout.ssmRequestsPerSecond),
          editBudget: createSharedBudget(
            createWindowLimit(
              redis,
              `${task.prefix}:budget:slack-update`,
              config.rollout.slackUpdatesPerMinute,
              60_000,
            ),
            'workspace',
          ),
          isCancelled: async () => false,
          events: receiver ? bus : undefined,
          outboxes: {
            console: {
              send: async () => undefined,
              edit: async () => {
                edits.push(Date.now());
              },
            },
          },
          settings: {
            pollMs: config.rollout.pollMs,
            safetyPollMs: config.rollout.safetyPollMs,
            commandTimeoutSeconds: config.rollout.commandTimeoutSeconds,
            deployDocument: config.rollout.deployDocument,
            // As the worker wires it (src/roles/worker.ts).
            editIntervalMs: 3000,
          },
          log,
        },
      ),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`rollout still running after ${deadlineMs / 1000} s`)),
          deadlineMs,
        );
      }),
    ]);
    const wallMs = performance.now() - started;
    loop.disable();
    return {
      summary,
      wallMs,
      edits,
      batchRecords: saved.batches?.length ?? 0,
      rss: rss.stop(),
      eventLoopP99Ms: loop.percentile(99) / 1e6,
    };
  } finally {
    clearTimeout(timer);
    if (receiver) await receiver.stop();
    await bus.stop();
    for (const client of [ec2, ssm, sqs]) client.destroy();
    await redis.quit();
  }
}

run(JSON.parse(process.argv[2] ?? '{}') as RolloutTask).then(
  (result) => {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.exit(0);
  },
  (error: unknown) => {
    console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);
