import { EC2Client } from '@aws-sdk/client-ec2';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SSMClient } from '@aws-sdk/client-ssm';
import type { Redis } from 'ioredis';
import { createFleet } from '../../src/aws/fleet.js';
import { createFleetView } from '../../src/aws/fleet-view.js';
import { createRunCommand } from '../../src/aws/run-command.js';
import { openSecretStore } from '../../src/aws/secret-store.js';
import { type Bot, createBot } from '../../src/bot/bot.js';
import { type Config, loadConfig } from '../../src/config.js';
import { createRoleOf, type RoleOf } from '../../src/core/caller.js';
import { openQueues, type Queues } from '../../src/jobs/queues.js';
import type { Logger } from '../../src/log.js';
import type { Metrics } from '../../src/metrics.js';
import { createAuditTrail } from '../../src/store/audit.js';
import { createMembers, type Members } from '../../src/store/members.js';
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
  };
}

export interface TestBot extends Bot {
  queues: Queues;
  members: Members;
  roleOf: RoleOf;
  close(): Promise<void>;
}

/** The bot role's services, wired exactly as main wires them, on a real Redis and SSM endpoint. */
export function testBot(config: Config, redis: Redis, aws: TestAws, log: Logger, metrics?: Metrics): TestBot {
  const queues = openQueues(redis, config.redis.prefix);
  const members = createMembers(redis, config.redis.prefix);
  const fleet = createFleet(aws.ec2, { region: config.aws.region, env: config.env, ...config.instances });
  const runCommand = createRunCommand(aws.ssm);
  const bot = createBot(
    config,
    {
      redis,
      secrets: openSecretStore(aws.ssm, aws.lambda, config.aws),
      queues,
      members,
      fleet,
      fleetView: createFleetView(fleet, runCommand, { cacheMs: config.fleetCacheMs }),
      runCommand,
      auditTrail: createAuditTrail(redis, config.redis.prefix, 1000),
      metrics,
    },
    log,
  );
  return {
    ...bot,
    queues,
    members,
    roleOf: createRoleOf(config.access, (id) => members.isMember(id)),
    close: () => queues.close(),
  };
}
