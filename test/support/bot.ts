import { EC2Client } from '@aws-sdk/client-ec2';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { Redis } from 'ioredis';
import { createAwsServices } from '../../src/aws/services.js';
import type { Bot } from '../../src/bot/bot.js';
import { type Config, loadConfig } from '../../src/config.js';
import type { RoleOf } from '../../src/core/caller.js';
import { openQueues, type Queues } from '../../src/jobs/queues.js';
import type { Logger } from '../../src/log.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { assembleBot } from '../../src/roles/bot.js';
import { createRoleContext } from '../../src/roles/context.js';
import type { Members } from '../../src/store/members.js';
import { withAccount } from '../peers/aws-account.js';

/** A config as main would load it, for tests that assemble the bot role themselves. */
export function testConfig(env: Record<string, string>): Config {
  return loadConfig(
    { AWS_REGION: 'us-east-1', DASHBOARD_PASSWORD: 'unused-dashboard-password', LOG_LEVEL: 'silent', ...env },
    { roles: ['bot'], console: true },
  );
}

export interface TestAws {
  ssm: SSMClient;
  ec2: EC2Client;
  lambda: LambdaClient;
  sqs: SQSClient;
}

/** SDK clients for one test account; one attempt, so failures show at once. */
export function testAws(endpoint: string, accountId: string): TestAws {
  const options = {
    region: 'us-east-1',
    endpoint,
    maxAttempts: 1,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  return {
    ssm: withAccount(new SSMClient(options), accountId),
    ec2: withAccount(new EC2Client(options), accountId),
    lambda: withAccount(new LambdaClient(options), accountId),
    sqs: withAccount(new SQSClient(options), accountId),
  };
}

export interface TestBot extends Bot {
  queues: Queues;
  members: Members;
  roleOf: RoleOf;
  close(): Promise<void>;
}

/** The bot role's services, wired by the role's own composition (src/roles/bot.ts), on a real Redis and SSM endpoint. */
export function testBot(config: Config, redis: Redis, aws: TestAws, log: Logger, metrics?: Metrics): TestBot {
  const queues = openQueues(redis, config.redis.prefix);
  const ctx = createRoleContext({
    config,
    log,
    metrics: metrics ?? createMetrics(),
    aws: createAwsServices({ ...aws, jobSsm: aws.ssm }, config),
    redis,
  });
  return {
    ...assembleBot(ctx, queues, log),
    queues,
    members: ctx.members,
    roleOf: ctx.roleOf,
    close: () => queues.close(),
  };
}
