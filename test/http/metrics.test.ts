import { DescribeInstancesCommand, DescribeRegionsCommand, EC2Client } from '@aws-sdk/client-ec2';
import { DescribeParametersCommand, SSMClient } from '@aws-sdk/client-ssm';
import { Queue, UnrecoverableError, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { awsCallMetrics } from '../../src/aws/call-metrics.js';
import { createMetrics, watchWorker } from '../../src/metrics.js';
import { testAccountId } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';

const accountId = testAccountId();
let simulator: AwsSimulator;

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl'), defaultAccountId: accountId });
});
afterAll(async () => simulator.close());

const clientOptions = (maxAttempts: number) => ({
  region: 'us-east-1',
  endpoint: simulator.url,
  credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  maxAttempts,
});

async function sample(metrics: ReturnType<typeof createMetrics>, line: string): Promise<number | undefined> {
  const { body } = await metrics.scrape();
  const found = body.split('\n').find((l) => l.startsWith(`${line} `));
  return found === undefined ? undefined : Number(found.slice(line.length + 1));
}

describe('AWS call metrics', () => {
  it('when a call is throttled once and then answered, then it counts as one ok call', async () => {
    const metrics = createMetrics();
    const ec2 = new EC2Client(clientOptions(3));
    ec2.middlewareStack.use(awsCallMetrics(metrics));
    simulator.control.injectFault(accountId, { operation: 'DescribeRegions', kind: 'throttle', count: 1 });
    await ec2.send(new DescribeRegionsCommand({}));
    ec2.destroy();
    expect(
      await sample(
        metrics,
        'fleetbot_aws_calls_total{service="ec2",operation="DescribeRegions",outcome="ok"}',
      ),
    ).toBe(1);
    expect((await metrics.scrape()).body).not.toContain('outcome="throttled"');
  });

  it('when the SDK gives up on throttling, then the call counts as throttled, for EC2 and SSM alike', async () => {
    const metrics = createMetrics();
    const ec2 = new EC2Client(clientOptions(1));
    const ssm = new SSMClient(clientOptions(1));
    ec2.middlewareStack.use(awsCallMetrics(metrics));
    ssm.middlewareStack.use(awsCallMetrics(metrics));
    simulator.control.injectFault(accountId, { operation: 'DescribeRegions', kind: 'throttle', count: 1 });
    simulator.control.injectFault(accountId, { operation: 'DescribeParameters', kind: 'throttle', count: 1 });
    await expect(ec2.send(new DescribeRegionsCommand({}))).rejects.toThrow();
    await expect(ssm.send(new DescribeParametersCommand({}))).rejects.toThrow();
    ec2.destroy();
    ssm.destroy();
    expect(
      await sample(
        metrics,
        'fleetbot_aws_calls_total{service="ec2",operation="DescribeRegions",outcome="throttled"}',
      ),
    ).toBe(1);
    expect(
      await sample(
        metrics,
        'fleetbot_aws_calls_total{service="ssm",operation="DescribeParameters",outcome="throttled"}',
      ),
    ).toBe(1);
  });

  it('when AWS answers with another error, then the call counts as error', async () => {
    const metrics = createMetrics();
    const ec2 = new EC2Client(clientOptions(1));
    ec2.middlewareStack.use(awsCallMetrics(metrics));
    await expect(
      ec2.send(new DescribeInstancesCommand({ InstanceIds: ['i-0000000000000dead'] })),
    ).rejects.toThrow();
    ec2.destroy();
    expect(
      await sample(
        metrics,
        'fleetbot_aws_calls_total{service="ec2",operation="DescribeInstances",outcome="error"}',
      ),
    ).toBe(1);
  });
});

describe('job metrics', () => {
  let redis: Redis;
  const prefix = uniquePrefix('metrics');
  beforeAll(() => {
    redis = testRedis();
  });
  afterAll(async () => {
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  it('when a worker finishes and fails jobs, then their durations land in the histogram', async () => {
    const metrics = createMetrics();
    const queue = new Queue('ops', { connection: redis, prefix });
    const worker = new Worker(
      'ops',
      async (job) => {
        if (job.name === 'ping') return 'pong';
        throw new UnrecoverableError('no');
      },
      { connection: redis, prefix },
    );
    watchWorker(metrics, worker);
    const done = new Promise<void>((resolve) => {
      let n = 0;
      const one = () => {
        n += 1;
        if (n === 3) resolve();
      };
      worker.on('completed', one);
      worker.on('failed', one);
    });
    await queue.add('ping', {});
    await queue.add('ping', {});
    await queue.add('<b>odd name</b>', {});
    await done;
    await worker.close();
    await queue.close();
    expect(
      await sample(
        metrics,
        'fleetbot_job_duration_seconds_count{queue="ops",name="ping",outcome="completed"}',
      ),
    ).toBe(2);
    // Job names are folded into `other` unless they look like ours, so label values stay few and plain.
    expect(
      await sample(metrics, 'fleetbot_job_duration_seconds_count{queue="ops",name="other",outcome="failed"}'),
    ).toBe(1);
  });

  it('when helpers are called, then each counter carries its labels', async () => {
    const metrics = createMetrics();
    metrics.chatMessage('slack', 'sent');
    metrics.chatMessage('slack', 'edited');
    metrics.chatMessage('slack', 'edited');
    metrics.chatRateLimited('telegram');
    metrics.secretStored('openai-api-key');
    expect(await sample(metrics, 'fleetbot_chat_messages_total{platform="slack",action="edited"}')).toBe(2);
    expect(await sample(metrics, 'fleetbot_chat_rate_limited_total{platform="telegram"}')).toBe(1);
    expect(await sample(metrics, 'fleetbot_secrets_stored_total{kind="openai-api-key"}')).toBe(1);
    // Registries are independent: a second one starts from zero.
    expect(await sample(createMetrics(), 'fleetbot_chat_rate_limited_total{platform="telegram"}')).toBe(
      undefined,
    );
  });

  it('when the instance listing is cached, then it is read again only after the TTL', async () => {
    const metrics = createMetrics();
    let now = 1_000_000;
    let calls = 0;
    metrics.observeInstances(
      async () => {
        calls += 1;
        return [{ state: 'running' }];
      },
      { ttlMs: 30_000, now: () => now },
    );
    await metrics.scrape();
    now += 29_000;
    await metrics.scrape();
    expect(calls).toBe(1);
    now += 2_000;
    expect(await sample(metrics, 'fleetbot_instances{state="running"}')).toBe(1);
    expect(calls).toBe(2);
  });

  it('when EC2 cannot be listed, then the scrape still answers and counts the failure', async () => {
    const metrics = createMetrics();
    metrics.observeInstances(async () => {
      throw new Error('down');
    });
    expect(await sample(metrics, 'fleetbot_instances{state="running"}')).toBe(undefined);
    // A failed listing is not cached: the next scrape tries EC2 again.
    await metrics.scrape();
    expect(
      await sample(metrics, 'fleetbot_metrics_collect_errors_total{source="ec2"}'),
    ).toBeGreaterThanOrEqual(2);
  });
});
