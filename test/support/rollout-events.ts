import { CreateQueueCommand, SQSClient } from '@aws-sdk/client-sqs';
import { withAccount } from '../peers/aws-account.js';
import type { AwsSimulator } from '../peers/aws-simulator.js';

/**
 * The rollout suites run twice: as they are (adaptive polling) and, from the `*-events.test.ts`
 * files that set this before importing them, with Run Command's completion events flowing through
 * an SQS queue in moto, as infra/fleetbot.yaml's rule delivers them.
 */
export const rolloutEventsOn = process.env.FLEETBOT_TEST_ROLLOUT_EVENTS === '1';

/** What the rule forwards (infra/fleetbot.yaml, RolloutEventsRule): the final statuses. */
const forwarded = ['Success', 'Failed', 'Cancelled', 'TimedOut'];

/**
 * With events on: a queue in moto for the account, the simulator delivering into it the way
 * EventBridge does at its worst (late, out of order, some twice, some never), and the settings that
 * point fleetbot at it. A lost event costs a safety read, two seconds here: never an instance.
 * Nothing without events.
 */
export async function rolloutEventsEnv(
  simulator: AwsSimulator,
  accountId: string,
): Promise<Record<string, string>> {
  if (!rolloutEventsOn) return {};
  const sqs = withAccount(
    new SQSClient({
      region: 'us-east-1',
      endpoint: simulator.url,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    }),
    accountId,
  );
  try {
    const { QueueUrl: queueUrl } = await sqs.send(
      new CreateQueueCommand({ QueueName: `rollout-events-${accountId}` }),
    );
    if (!queueUrl) throw new Error('moto created no queue');
    simulator.control.emitRunCommandEvents(accountId, {
      queueUrl,
      statuses: forwarded,
      jitterMs: 300,
      lossRate: 0.1,
      duplicateRate: 0.2,
    });
    return { ROLLOUT_EVENTS_QUEUE_URL: queueUrl, ROLLOUT_EVENTS_SAFETY_POLL_SECONDS: '2' };
  } finally {
    sqs.destroy();
  }
}
