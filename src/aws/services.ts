import { EC2Client } from '@aws-sdk/client-ec2';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { Config } from '../config.js';
import { createFleetView, type FleetView } from '../core/fleet-view.js';
import type { InvocationEvent } from '../core/ports/invocation-events.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { awsCallMetrics } from './call-metrics.js';
import { createFleet, type Fleet } from './fleet.js';
import { type EventQueueReceiver, receiveInvocationEvents } from './invocation-event-queue.js';
import { createAwsProbe } from './probe.js';
import { createRunCommand, type RunCommand } from './run-command.js';
import { openSecretStore, type SecretStore } from './secret-store.js';

/** The SDK clients fleetbot talks to AWS through. */
export interface AwsClients {
  ec2: EC2Client;
  ssm: SSMClient;
  /** Jobs' Run Command calls: never retried by the SDK (see openAwsClients). */
  jobSsm: SSMClient;
  lambda: LambdaClient;
  /** Receives Run Command's completion events (ROLLOUT_EVENTS_QUEUE_URL). */
  sqs: SQSClient;
}

/** What the roles use of AWS, built once per process so every role shares one set of clients and reads. */
export interface AwsServices {
  fleet: Fleet;
  /** One for the bot and the dashboard alike, so a /fleet and the fleet page share a listing too. */
  fleetView: FleetView;
  /** For people's requests: the SDK retries a blip. */
  runCommand: RunCommand;
  /** For jobs: every attempt waits its turn at the shared SSM budget. */
  jobRunCommand: RunCommand;
  secrets: SecretStore;
  /** A cheap read that proves credentials, endpoint and network all work. */
  probe: () => Promise<void>;
  /** Long-polls the completion events queue, when one is configured, handing each batch to `publish`. */
  receiveInvocationEvents?: (
    publish: (events: InvocationEvent[]) => Promise<void>,
    log: Logger,
  ) => EventQueueReceiver;
}

type AwsConfig = Pick<Config, 'aws' | 'env' | 'instances' | 'fleetCacheMs'> & {
  rollout: Pick<Config['rollout'], 'eventsQueueUrl'>;
};

/** The process's SDK clients, each call counted in the metrics. */
export function openAwsClients(config: Pick<Config, 'aws'>, metrics?: Metrics): AwsClients {
  const where = { region: config.aws.region, endpoint: config.aws.endpoint };
  // The SDK's standard retries (jittered backoff, and a retry quota so a storm is not multiplied)
  // absorb a blip; jobs wait out anything longer themselves, for minutes (src/core/aws-wait.ts).
  const clients: AwsClients = {
    ec2: new EC2Client({ ...where, retryMode: 'standard', maxAttempts: 3 }),
    ssm: new SSMClient({ ...where, retryMode: 'standard', maxAttempts: 3 }),
    // Every attempt must wait its turn at the shared SSM budget, which the SDK's retries would skip,
    // so the SDK never retries them and the jobs retry through the budget.
    jobSsm: new SSMClient({ ...where, maxAttempts: 1 }),
    lambda: new LambdaClient({ ...where, retryMode: 'standard', maxAttempts: 3 }),
    sqs: new SQSClient({ ...where, retryMode: 'standard', maxAttempts: 3 }),
  };
  if (metrics)
    for (const client of [clients.ec2, clients.ssm, clients.jobSsm, clients.sqs])
      client.middlewareStack.use(awsCallMetrics(metrics));
  return clients;
}

export function closeAwsClients(clients: AwsClients): void {
  for (const client of Object.values(clients)) client.destroy();
}

/** fleetbot's view of AWS, on the given clients. */
export function createAwsServices(clients: AwsClients, config: AwsConfig): AwsServices {
  const fleet = createFleet(clients.ec2, { region: config.aws.region, env: config.env, ...config.instances });
  const runCommand = createRunCommand(clients.ssm);
  const queueUrl = config.rollout.eventsQueueUrl;
  return {
    fleet,
    fleetView: createFleetView(fleet, runCommand, { cacheMs: config.fleetCacheMs }),
    runCommand,
    jobRunCommand: createRunCommand(clients.jobSsm),
    secrets: openSecretStore(clients.ssm, clients.lambda, config.aws),
    probe: createAwsProbe(clients.ec2),
    receiveInvocationEvents: queueUrl
      ? (publish, log) => receiveInvocationEvents({ sqs: clients.sqs, queueUrl, publish, log })
      : undefined,
  };
}
