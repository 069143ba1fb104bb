import { EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createFleet } from '../../src/aws/fleet.js';
import { receiveInvocationEvents } from '../../src/aws/invocation-event-queue.js';
import { createRunCommand } from '../../src/aws/run-command.js';
import type { RolloutPayload } from '../../src/jobs/queues.js';
import { LockLost, processRollout, type RolloutDeps } from '../../src/jobs/rollout.js';
import { createInvocationEventBus } from '../../src/store/invocation-events.js';
import { createPacer } from '../../src/store/rate-limits.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { capturedLogger } from '../support/quiet-log.js';
import { rolloutEventsEnv } from '../support/rollout-events.js';

/**
 * A worker can die at any await. Here it dies at a random point of each of 20 deploys: at a write of
 * the job's record, either just before the write lands or just after (a crash right after SendCommand
 * returned is the first kind). BullMQ then hands the job, with whatever record it last saved, to the
 * next worker. Every instance must receive each deploy exactly once.
 */

const accountId = testAccountId();
const redis = testRedis();
const prefix = uniquePrefix('rollout-crash');
let simulator: AwsSimulator;
let deps: RolloutDeps;
let stopEvents: (() => Promise<void>) | undefined;

class WorkerDied extends Error {}

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
  const options = {
    region: 'us-east-1',
    endpoint: simulator.url,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  const ec2 = new EC2Client(options);
  await ec2.send(
    new RunInstancesCommand({
      ImageId: 'ami-12c6146b',
      MinCount: 60,
      MaxCount: 60,
      TagSpecifications: [
        {
          ResourceType: 'instance',
          Tags: [
            { Key: 'app', Value: 'fleetbot' },
            { Key: 'env', Value: 'dev' },
            { Key: 'user', Value: '40000' },
          ],
        },
      ],
    }),
  );
  simulator.control.scriptRunCommand(accountId, '*', { status: 'Success', afterMs: 30 });
  deps = {
    fleet: createFleet(ec2, { region: 'us-east-1', env: 'dev', instanceType: 't3.small' }),
    runCommand: createRunCommand(new SSMClient(options)),
    ssmPacer: createPacer(redis, `${prefix}:pace`, 100),
    editBudget: { tryTake: async () => true, take: async () => {} },
    isCancelled: async () => false,
    outboxes: { console: { send: async () => undefined, edit: async () => {} } },
    settings: {
      pollMs: 40,
      commandTimeoutSeconds: 60,
      deployDocument: 'fleetbot-deploy',
      editIntervalMs: 10,
      // This simulator lists a command as soon as it is sent (no visibility lag is set but in the last test).
      listingLagMs: 0,
    },
    log: capturedLogger().log,
  };
  const queueUrl = (await rolloutEventsEnv(simulator, accountId)).ROLLOUT_EVENTS_QUEUE_URL;
  if (queueUrl) {
    const bus = createInvocationEventBus(redis, prefix, deps.log);
    const receiver = receiveInvocationEvents({
      sqs: new SQSClient(options),
      queueUrl,
      publish: (events) => bus.publish(events),
      log: deps.log,
    });
    stopEvents = async () => {
      await receiver.stop();
      await bus.stop();
    };
    deps = { ...deps, events: bus, settings: { ...deps.settings, safetyPollMs: 1000 } };
  }
});

afterAll(async () => {
  await stopEvents?.();
  await simulator?.close();
  await dropPrefix(redis, prefix);
  await redis.quit();
});

/** Every one of the 60 instances received this deploy, and none of them twice. */
function expectEachInstanceOnce(version: string) {
  const received = simulator.control
    .invocations(accountId)
    .filter((i) => i.parameters.version?.[0] === version)
    .map((i) => i.instanceId);
  expect(received).toHaveLength(60);
  expect(new Set(received).size).toBe(60);
}

/** An approved deploy of `version` to the whole fleet, 20 instances at a time: three batches. */
function approvedDeploy(planId: string, version: string): RolloutPayload {
  return {
    planId,
    request: {
      operation: 'deploy',
      version,
      reboot: 'never',
      targets: 'all',
      concurrency: '20',
      maxErrors: '0',
      canary: 0,
    },
    requestedBy: 'UANN',
    approvedBy: 'UBOB',
    message: { platform: 'console', chatId: 'c', messageId: '1' },
    startedAt: Date.now(),
  };
}

describe('a deploy whose worker dies', () => {
  it('when the worker dies at a random point of each of 20 deploys, then every instance receives each deploy exactly once', async () => {
    let random = 20261123;
    const next = () => {
      random = (random * 1103515245 + 12345) % 2 ** 31;
      return random / 2 ** 31;
    };
    for (let run = 0; run < 20; run++) {
      const version = `v5.${run}.0`;
      let saved = approvedDeploy(`crash${String(run).padStart(7, '0')}`, version);
      // A clean run writes its record 10 times (the plan, then sending, sent and done for each of 3 batches); the first attempt dies at one of them, landed or not.
      const dieAt = 1 + Math.floor(next() * 10);
      const landed = next() < 0.5;
      let writes = 0;
      let crashed = false;
      for (let attempt = 0; attempt < 5; attempt++) {
        try {
          await processRollout(
            {
              id: `rollout-crash-${run}`,
              data: saved,
              updateData: async (data) => {
                writes++;
                if (!crashed && writes === dieAt) {
                  crashed = true;
                  if (landed) saved = structuredClone(data);
                  throw new WorkerDied();
                }
                saved = structuredClone(data);
              },
            },
            deps,
          );
          break;
        } catch (error) {
          if (!(error instanceof WorkerDied)) throw error;
        }
      }
      expect(crashed).toBe(true);
      expectEachInstanceOnce(version);
      expect(saved.batches?.every((b) => b.state === 'done')).toBe(true);
    }
    // Generous: with events on, each resumed attempt waits for late events or a safety read.
  }, 300_000);

  it('when ListCommands lags behind SendCommand and the worker died right after a send, then the next one waits out the lag and finds it instead of sending it again', async () => {
    const version = 'v5.98.0';
    const lagMs = 1_500;
    simulator.control.setVisibilityLag(accountId, { listCommandsMs: lagMs });
    try {
      let saved = approvedDeploy('listlag0001', version);
      let died = false;
      await expect(
        processRollout(
          {
            id: 'rollout-list-lag',
            data: saved,
            updateData: async (data) => {
              // The write after the first SendCommand returned (its `sent` mark) never lands.
              if (data.batches?.[0]?.state === 'sent') {
                died = true;
                throw new WorkerDied();
              }
              saved = structuredClone(data);
            },
          },
          deps,
        ),
      ).rejects.toThrow(WorkerDied);
      expect(died).toBe(true);
      expect(saved.batches?.[0]?.state).toBe('sending');
      // The next worker takes over at once: the command is younger than the listing lag.
      await processRollout(
        {
          id: 'rollout-list-lag',
          data: saved,
          updateData: async (data) => {
            saved = structuredClone(data);
          },
        },
        { ...deps, settings: { ...deps.settings, listingLagMs: 2 * lagMs } },
      );
      expectEachInstanceOnce(version);
      // The first look missed it, the second (after the lag) found it.
      const lookups = simulator.control
        .calls(accountId, 'ListCommands')
        .filter((c) => c.at >= (saved.batches?.[0]?.sendingAt ?? 0));
      expect(lookups.length).toBeGreaterThanOrEqual(2);
    } finally {
      simulator.control.setVisibilityLag(accountId, { listCommandsMs: 0 });
    }
  });

  it('when another worker has taken the job over, then the stalled one sends nothing more', async () => {
    const version = 'v5.99.0';
    let saved = approvedDeploy('lostlock001', version);
    let owner = true;
    const run = processRollout(
      {
        id: 'rollout-lost-lock',
        data: saved,
        updateData: async (data) => {
          saved = structuredClone(data);
          // The first batch is on its way when this worker's lock lapses.
          if (data.batches?.[0]?.state === 'sent') owner = false;
        },
        holdsLock: async () => owner,
      },
      deps,
    );
    await expect(run).rejects.toThrow(LockLost);
    const received = simulator.control
      .invocations(accountId)
      .filter((i) => i.parameters.version?.[0] === version);
    expect(received).toHaveLength(20);
    // Batch 0 ran (finished, or still counted in flight where its first instances' slots were
    // refilled); batch 1 stays marked `sending` for the new owner to look up by Comment, and nothing
    // after it left.
    const states = saved.batches?.map((b) => b.state) ?? [];
    expect(['done', 'sent']).toContain(states[0]);
    expect(states[1]).toBe('sending');
    expect(states.slice(2).every((s) => s === 'planned')).toBe(true);
  });
});
