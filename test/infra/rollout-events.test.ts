// biome-ignore-all lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub strings are literal ${...} text here.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateSubnetCommand, CreateVpcCommand } from '@aws-sdk/client-ec2';
import { runSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, parseRoles } from '../../src/config.js';
import { testAccountId } from '../peers/aws-account.js';
import {
  decodeTemplate,
  list,
  loadTemplate,
  type PolicyDocument,
  resolveTemplate,
  resource,
  type Statement,
  type Template,
  templatePath,
} from '../support/cfn-template.js';
import {
  createStack,
  inlinePolicyOf,
  type Moto,
  motoAccount,
  type Stack,
  trustPolicyOf,
} from '../support/moto-account.js';
import { listOf } from '../support/xml.js';

/*
 * The rollout events path: Run Command's EventBridge events for finished deploy and patch invocations,
 * through RolloutEventsRule into the SSE-KMS RolloutEventsQueue (infra/fleetbot.yaml), read by the
 * worker service alone, which gets the queue URL as ROLLOUT_EVENTS_QUEUE_URL (infra/service.yaml).
 * Checked four ways: the templates as data; the queue policies, the key policy and the roles' policies
 * decided by the IAM evaluator the other infra tests use (@cloud-copilot/iam-simulate), resolved for one
 * account, region, Prefix and Env; the stack deployed into moto, with events put on moto's default bus;
 * the worker's task definition against the fleet stack's outputs.
 *
 * moto 5.2.1 gaps met here: AWS::SQS::QueuePolicy has no CloudFormation model (the stack completes and
 * the queues carry no Policy attribute), and moto enforces no queue policy, key policy or IAM at all, so
 * who may send, receive and decrypt is the evaluator's to show. moto's EventBridge accepts PutEvents
 * with an aws.* source (AWS refuses it), which is what lets its own pattern matcher judge Run Command
 * events against the deployed rule.
 */

const servicePath = fileURLToPath(new URL('../../infra/service.yaml', import.meta.url));

const getAtt = (name: string, attribute: string) => ({ 'Fn::GetAtt': [name, attribute] });
const ref = (name: string) => ({ Ref: name });
const actionsOf = (s: Statement) => list(s.Action) as string[];
const bySid = (doc: PolicyDocument, sid: string): Statement => {
  const found = doc.Statement.find((s) => s.Sid === sid);
  if (!found) throw new Error(`no statement ${sid}`);
  return found;
};

/**
 * Where a Run Command invocation ends: the final CommandInvocationStatus values, and the two final
 * states without a status value of their own; and the statuses it passes through on the way.
 */
const terminalStatuses = ['Cancelled', 'Failed', 'Success', 'Terminated', 'TimedOut', 'Undeliverable'];
const transientStatuses = ['Pending', 'InProgress', 'Delayed', 'Cancelling'];
const detailType = 'EC2 Command Invocation Status-change Notification';

interface EventPattern {
  source: string[];
  'detail-type': string[];
  detail: { 'document-name': unknown[]; status: string[] };
}

interface Container {
  Command: string[];
  Environment: { Name: string; Value: unknown }[];
  Secrets?: { Name: string; ValueFrom: unknown }[];
}

/** Each role's task definition in service.yaml, by its container's --role. */
function taskDefinitionsByRole(service: Template) {
  const found: Record<string, { name: string; taskRoleArn: unknown; container: Container }> = {};
  for (const [name, r] of Object.entries(service.Resources)) {
    if (r.Type !== 'AWS::ECS::TaskDefinition') continue;
    const [container] = r.Properties.ContainerDefinitions as Container[];
    if (!container) throw new Error(`${name} has no container`);
    found[container.Command[1] ?? ''] = { name, taskRoleArn: r.Properties.TaskRoleArn, container };
  }
  return found;
}

describe('rollout events in the templates', () => {
  let t: Template;
  let service: Template;

  beforeAll(async () => {
    [t, service] = await Promise.all([loadTemplate(), decodeTemplate(servicePath)]);
  });

  it('when the rule is read, then it takes only Run Command invocation status changes on the default bus, for the deploy document and AWS-RunPatchBaseline, in a terminal status', () => {
    const rule = resource(t, 'RolloutEventsRule');
    expect(rule.Type).toBe('AWS::Events::Rule');
    expect(rule.Condition).toBeUndefined();
    expect(rule.Properties).toMatchObject({ EventBusName: 'default', State: 'ENABLED' });
    const pattern = rule.Properties.EventPattern as EventPattern;
    expect(pattern).toEqual({
      source: ['aws.ssm'],
      'detail-type': [detailType],
      detail: {
        'document-name': [ref('DeployDocument'), 'AWS-RunPatchBaseline'],
        status: expect.any(Array),
      },
    });
    // Exactly the statuses an invocation ends in: an InProgress event would wake the worker for nothing.
    expect([...pattern.detail.status].sort()).toEqual(terminalStatuses);
    for (const status of transientStatuses) expect(pattern.detail.status).not.toContain(status);
    // Only documents the service may run at all (BotPolicy's RunOnlyOurDocuments).
    const runnable = JSON.stringify(
      bySid(resource(t, 'BotPolicy').Properties.PolicyDocument as PolicyDocument, 'RunOnlyOurDocuments')
        .Resource,
    );
    expect(runnable).toContain('document/${DeployDocument}');
    expect(runnable).toContain('::document/AWS-RunPatchBaseline');
  });

  it("when the stack is resolved with the default Prefix, then the rule's deploy document is fleetbot's default SSM_DEPLOY_DOCUMENT", () => {
    const resolved = resolveFor(t);
    const pattern = resolved.Resources.RolloutEventsRule?.Properties.EventPattern as EventPattern;
    const config = loadConfig({ AWS_REGION: region }, { roles: parseRoles('worker') ?? [] });
    expect(pattern.detail['document-name']).toEqual([config.rollout.deployDocument, 'AWS-RunPatchBaseline']);
    expect(config.rollout.deployDocument).toBe(`${prefix}-deploy`);
  });

  it('when the target is read, then events go to the queue, give up after 15 minutes of retries and land in the dead-letter queue', () => {
    const queue = resource(t, 'RolloutEventsQueue').Properties;
    expect(resource(t, 'RolloutEventsRule').Properties.Targets).toEqual([
      {
        Id: expect.any(String),
        Arn: getAtt('RolloutEventsQueue', 'Arn'),
        RetryPolicy: { MaximumEventAgeInSeconds: 900, MaximumRetryAttempts: 20 },
        DeadLetterConfig: { Arn: getAtt('RolloutEventsDeadLetterQueue', 'Arn') },
      },
    ]);
    // An event EventBridge still retries is one the queue would keep once delivered.
    expect(900).toBeLessThan(Number(queue.MessageRetentionPeriod));
  });

  it('when the queues are read, then both are encrypted with the stack key EventBridge may use, the queue redrives after 5 receives, keeps events an hour and long-polls, and the dead-letter queue keeps them longer', () => {
    const queue = resource(t, 'RolloutEventsQueue');
    const dlq = resource(t, 'RolloutEventsDeadLetterQueue');
    for (const q of [queue, dlq]) {
      expect(q.Type).toBe('AWS::SQS::Queue');
      // SSE-KMS with the customer managed key, not SSE-SQS and not the AWS managed aws/sqs key.
      expect(q.Properties.KmsMasterKeyId).toEqual(getAtt('RolloutEventsKey', 'Arn'));
      expect(q.Properties.SqsManagedSseEnabled).toBeUndefined();
      expect(q.Properties.FifoQueue).toBeUndefined();
    }
    expect(queue.Properties).toMatchObject({
      MessageRetentionPeriod: 3600,
      ReceiveMessageWaitTimeSeconds: 20,
      RedrivePolicy: {
        deadLetterTargetArn: getAtt('RolloutEventsDeadLetterQueue', 'Arn'),
        maxReceiveCount: 5,
      },
    });
    expect(dlq.Properties.RedrivePolicy).toBeUndefined();
    expect(Number(dlq.Properties.MessageRetentionPeriod)).toBeGreaterThan(
      Number(queue.Properties.MessageRetentionPeriod),
    );

    const key = resource(t, 'RolloutEventsKey');
    expect(key.Type).toBe('AWS::KMS::Key');
    expect(key.Properties.EnableKeyRotation).toBe(true);
    const keyPolicy = key.Properties.KeyPolicy as PolicyDocument;
    const forEvents = keyPolicy.Statement.filter(
      (s) => JSON.stringify(s.Principal) === JSON.stringify({ Service: 'events.amazonaws.com' }),
    );
    expect(forEvents).toHaveLength(1);
    expect(forEvents[0]?.Effect).toBe('Allow');
    expect(actionsOf(forEvents[0] as Statement).sort()).toEqual(['kms:Decrypt', 'kms:GenerateDataKey']);
    // Nobody else is named in the key policy: the worker's decrypt comes from its identity policy.
    expect(keyPolicy.Statement.map((s) => s.Sid).sort()).toEqual([
      'AccountAdministersTheKey',
      'EventBridgeUsesTheKey',
    ]);
  });

  it('when the queue policies are read, then each lets events.amazonaws.com send only from the rule and denies requests without TLS', () => {
    for (const [policy, queue] of [
      ['RolloutEventsQueuePolicy', 'RolloutEventsQueue'],
      ['RolloutEventsDeadLetterQueuePolicy', 'RolloutEventsDeadLetterQueue'],
    ] as const) {
      const r = resource(t, policy);
      expect(r.Type).toBe('AWS::SQS::QueuePolicy');
      expect(r.Properties.Queues).toEqual([ref(queue)]);
      const doc = r.Properties.PolicyDocument as PolicyDocument;
      const allows = doc.Statement.filter((s) => s.Effect === 'Allow');
      expect(allows).toEqual([
        {
          Sid: 'RolloutEventsRuleSends',
          Effect: 'Allow',
          Principal: { Service: 'events.amazonaws.com' },
          Action: 'sqs:SendMessage',
          Resource: getAtt(queue, 'Arn'),
          Condition: { ArnEquals: { 'aws:SourceArn': getAtt('RolloutEventsRule', 'Arn') } },
        },
      ]);
      expect(bySid(doc, 'TlsOnly')).toEqual({
        Sid: 'TlsOnly',
        Effect: 'Deny',
        Principal: '*',
        Action: 'sqs:*',
        Resource: getAtt(queue, 'Arn'),
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      });
    }
  });

  it('when the roles are read, then only the worker role carries the queue, and it has the service policy too', () => {
    const attachedTo = (role: string) =>
      Object.entries(t.Resources)
        .filter(([, r]) => r.Type === 'AWS::IAM::Policy')
        .filter(([, r]) =>
          list(r.Properties.Roles).some((x) => JSON.stringify(x) === JSON.stringify(ref(role))),
        )
        .map(([name]) => name)
        .sort();
    expect(attachedTo('WorkerRole')).toEqual(['BotPolicy', 'WorkerRolloutEventsPolicy']);
    expect(attachedTo('BotRole')).toEqual(['BotPolicy']);
    const mentionsQueue = (name: string) =>
      JSON.stringify(resource(t, name).Properties).includes('RolloutEvents');
    expect(mentionsQueue('BotPolicy')).toBe(false);
    expect(resource(t, 'WorkerRole').Properties.AssumeRolePolicyDocument).toEqual({
      Version: '2012-10-17',
      Statement: [
        {
          Effect: 'Allow',
          Principal: { Service: 'ecs-tasks.amazonaws.com' },
          Action: 'sts:AssumeRole',
          Condition: { StringEquals: { 'aws:SourceAccount': ref('AWS::AccountId') } },
        },
      ],
    });
  });

  it("when the SQS calls in src/ are read, then the worker's consumer policy allows each of them and BotPolicy none", async () => {
    const srcDir = fileURLToPath(new URL('../../src', import.meta.url));
    const files = (await readdir(srcDir, { recursive: true })).filter((f) => f.endsWith('.ts'));
    const calls: string[] = [];
    for (const file of files) {
      const text = await readFile(join(srcDir, file), 'utf8');
      const imported = new Set(
        [...text.matchAll(/import\s*\{([^}]*)\}\s*from\s*'@aws-sdk\/client-sqs'/g)].flatMap((m) =>
          (m[1] ?? '').split(',').map((n) => n.trim().replace(/^type\s+/, '')),
        ),
      );
      for (const m of text.matchAll(/\bnew\s+([A-Z][A-Za-z0-9]*)Command\s*\(/g))
        if (imported.has(`${m[1]}Command`))
          // The batch calls are authorized as their single forms (SendMessageBatch as sqs:SendMessage...).
          calls.push(`sqs:${(m[1] ?? '').replace(/Batch$/, '')} (${file})`);
    }
    const consumer = bySid(
      resource(t, 'WorkerRolloutEventsPolicy').Properties.PolicyDocument as PolicyDocument,
      'ConsumeRolloutEvents',
    );
    const notAllowed = calls.filter((c) => !actionsOf(consumer).includes(c.split(' ')[0] ?? ''));
    expect(notAllowed).toEqual([]);
    const botAllows = (resource(t, 'BotPolicy').Properties.PolicyDocument as PolicyDocument).Statement.filter(
      (st) => st.Effect === 'Allow',
    ).flatMap(actionsOf);
    expect(botAllows.filter((a) => a.startsWith('sqs:'))).toEqual([]);
  });

  it('when service.yaml is read, then the worker alone gets ROLLOUT_EVENTS_QUEUE_URL and the worker role, both from the fleet stack outputs of the same names', () => {
    const defs = taskDefinitionsByRole(service);
    expect(Object.keys(defs).sort()).toEqual(['bot', 'dashboard', 'worker']);
    const queueUrlOf = (role: string) =>
      defs[role]?.container.Environment.filter((e) => e.Name === 'ROLLOUT_EVENTS_QUEUE_URL');
    expect(queueUrlOf('worker')).toEqual([
      { Name: 'ROLLOUT_EVENTS_QUEUE_URL', Value: ref('RolloutEventsQueueUrl') },
    ]);
    expect(queueUrlOf('bot')).toEqual([]);
    expect(queueUrlOf('dashboard')).toEqual([]);
    // A URL, not a secret: it travels in the plain environment.
    expect(defs.worker?.container.Secrets?.map((s) => s.Name)).not.toContain('ROLLOUT_EVENTS_QUEUE_URL');
    expect(defs.worker?.taskRoleArn).toEqual(ref('WorkerRoleArn'));
    expect(defs.bot?.taskRoleArn).toEqual(ref('BotRoleArn'));
    expect(defs.dashboard?.taskRoleArn).toEqual(ref('BotRoleArn'));

    // service.yaml takes the fleet stack's outputs as parameters of the same names (no Fn::ImportValue).
    const outputs = t.Outputs as Record<string, { Value: unknown }>;
    expect(outputs.RolloutEventsQueueUrl?.Value).toEqual(ref('RolloutEventsQueue'));
    expect(outputs.WorkerRoleArn?.Value).toEqual(getAtt('WorkerRole', 'Arn'));
    expect(outputs.RolloutEventsQueueArn?.Value).toEqual(getAtt('RolloutEventsQueue', 'Arn'));
    expect(outputs.RolloutEventsDeadLetterQueueUrl?.Value).toEqual(ref('RolloutEventsDeadLetterQueue'));
    expect(outputs.RolloutEventsDeadLetterQueueArn?.Value).toEqual(
      getAtt('RolloutEventsDeadLetterQueue', 'Arn'),
    );
    const params = service.Parameters as Record<string, { Default?: unknown; AllowedPattern?: string }>;
    for (const name of ['RolloutEventsQueueUrl', 'WorkerRoleArn']) {
      expect(params[name], name).toBeDefined();
      expect(params[name]?.Default, name).toBeUndefined();
    }
    const urlPattern = new RegExp(params.RolloutEventsQueueUrl?.AllowedPattern ?? '$^');
    expect(
      urlPattern.test(
        `https://sqs.${region}.amazonaws.com/${account}/fleetbot-prod-RolloutEventsQueue-1A2B3C4D5E6F`,
      ),
    ).toBe(true);
    expect(urlPattern.test(`https://sqs.cn-north-1.amazonaws.com.cn/${account}/q`)).toBe(true);
    expect(urlPattern.test(`arn:aws:sqs:${region}:${account}:q`)).toBe(false);
    expect(new RegExp(params.WorkerRoleArn?.AllowedPattern ?? '$^').test(arn.role(roles.worker))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// The IAM evaluator
// ---------------------------------------------------------------------------------------------

const partition = 'aws';
const region = 'eu-west-1';
const account = '111122223333';
const prefix = 'fleetbot';
const env = 'prod';
const roles = {
  bot: `${prefix}-${region}-bot`,
  worker: `${prefix}-${region}-worker`,
};
const ids = {
  key: '77777777-8888-9999-aaaa-bbbbbbbbbbbb',
  queue: `${prefix}-${env}-RolloutEventsQueue-1A2B3C4D5E6F`,
  dlq: `${prefix}-${env}-RolloutEventsDeadLetterQueue-6F5E4D3C2B1A`,
  rule: `${prefix}-${env}-RolloutEventsRule-0A1B2C3D4E5F`,
};
const arn = {
  role: (name: string) => `arn:${partition}:iam::${account}:role/${name}`,
  session: (role: string, name: string) => `arn:${partition}:sts::${account}:assumed-role/${role}/${name}`,
  queue: (name: string) => `arn:${partition}:sqs:${region}:${account}:${name}`,
  rule: (name: string) => `arn:${partition}:events:${region}:${account}:rule/${name}`,
  key: (id: string) => `arn:${partition}:kms:${region}:${account}:key/${id}`,
  param: (name: string) => `arn:${partition}:ssm:${region}:${account}:parameter/${name.replace(/^\//, '')}`,
  document: (name: string) => `arn:${partition}:ssm:${region}:${account}:document/${name}`,
};
const queueUrl = (name: string) => `https://sqs.${region}.amazonaws.com/${account}/${name}`;

/**
 * The fleet template for one deployment. The new resources get the ids this suite reasons about;
 * every other Ref and Fn::GetAtt gets a stand-in, which no row below looks at.
 */
function resolveFor(t: Template): Template {
  const standIn = <T extends Record<string, string>>(known: T) =>
    new Proxy(known, {
      get: (o, k) => (typeof k === 'string' ? (o[k] ?? `${k}-stand-in`) : undefined),
    });
  return resolveTemplate(t, {
    partition,
    region,
    accountId: account,
    parameters: {
      Prefix: prefix,
      Env: env,
      VpcId: 'vpc-0123456789abcdef0',
      SubnetId: 'subnet-0123456789abcdef0',
      AmiId: 'ami-0123456789abcdef0',
    },
    physicalIds: standIn({
      BotRole: roles.bot,
      WorkerRole: roles.worker,
      DeployDocument: `${prefix}-deploy`,
      RolloutEventsKey: ids.key,
      RolloutEventsQueue: queueUrl(ids.queue),
      RolloutEventsDeadLetterQueue: queueUrl(ids.dlq),
      RolloutEventsRule: ids.rule,
    }),
    attributes: standIn({
      'BotRole.Arn': arn.role(roles.bot),
      'WorkerRole.Arn': arn.role(roles.worker),
      'RolloutEventsKey.Arn': arn.key(ids.key),
      'RolloutEventsQueue.Arn': arn.queue(ids.queue),
      'RolloutEventsDeadLetterQueue.Arn': arn.queue(ids.dlq),
      'RolloutEventsRule.Arn': arn.rule(ids.rule),
    }),
  });
}

type Decision = 'allow' | 'deny (explicit)' | 'deny (implicit)';
const decisionOf: Record<string, Decision> = {
  Allowed: 'allow',
  ExplicitlyDenied: 'deny (explicit)',
  ImplicitlyDenied: 'deny (implicit)',
};

interface Principal {
  label: string;
  /** A role session's ARN, or a service principal's name. */
  principal: string;
  context: Record<string, string>;
  policies: { name: string; policy: PolicyDocument }[];
}
interface Row {
  who: Principal;
  what: string;
  action: string;
  resource: string;
  context?: Record<string, string>;
  expected: Decision;
}

describe('IAM evaluator: who may send to, read from and decrypt the rollout events queues', () => {
  let resolved: Template;
  let rows: Row[];

  beforeAll(async () => {
    resolved = resolveFor(await loadTemplate());
    const policiesOfRole = (roleName: string) =>
      Object.entries(resolved.Resources)
        .filter(([, r]) => r.Type === 'AWS::IAM::Policy' && list(r.Properties.Roles).includes(roleName))
        .map(([name, r]) => ({ name, policy: r.Properties.PolicyDocument as PolicyDocument }));
    const role = (label: string, roleName: string, roleId: string): Principal => ({
      label,
      principal: arn.session(roleName, 'ecs-task-0123456789abcdef'),
      context: {
        'aws:PrincipalArn': arn.role(roleName),
        'aws:PrincipalAccount': account,
        'aws:userid': `${roleId}:ecs-task-0123456789abcdef`,
      },
      policies: policiesOfRole(roleName),
    });
    const worker = role('worker', roles.worker, 'AROAWORKEREXAMPLE');
    // The dashboard tasks run as the bot role too (service.yaml).
    const bot = role('bot (and dashboard)', roles.bot, 'AROABOTEXAMPLE');
    const admin: Principal = {
      label: 'admin (sqs:* and kms:* on *)',
      principal: arn.session('AWSReservedSSO_Admin_0123456789abcdef', 'alice'),
      context: {
        'aws:PrincipalArn': arn.role('AWSReservedSSO_Admin_0123456789abcdef'),
        'aws:PrincipalAccount': account,
        'aws:userid': 'AROAADMINEXAMPLE:alice',
      },
      policies: [
        {
          name: 'admin',
          policy: {
            Version: '2012-10-17',
            Statement: [{ Effect: 'Allow', Action: ['sqs:*', 'kms:*'], Resource: '*' }],
          },
        },
      ],
    };
    // EventBridge acting for a rule of this account: the rule's ARN arrives as aws:SourceArn.
    const eventBridge = (rule: string, label: string): Principal => ({
      label,
      principal: 'events.amazonaws.com',
      context: { 'aws:SourceArn': arn.rule(rule), 'aws:SourceAccount': account },
      policies: [],
    });
    const rule = eventBridge(ids.rule, 'EventBridge for RolloutEventsRule');
    const otherRule = eventBridge('someone-elses-rule', 'EventBridge for another rule');

    const tls = { 'aws:SecureTransport': 'true' };
    const viaSqs = { 'kms:ViaService': `sqs.${region}.amazonaws.com` };
    const queue = arn.queue(ids.queue);
    const dlq = arn.queue(ids.dlq);
    const key = arn.key(ids.key);
    rows = [
      {
        who: rule,
        what: 'delivers an event',
        action: 'sqs:SendMessage',
        resource: queue,
        context: tls,
        expected: 'allow',
      },
      {
        who: rule,
        what: 'delivers a failed event to the DLQ',
        action: 'sqs:SendMessage',
        resource: dlq,
        context: tls,
        expected: 'allow',
      },
      {
        who: rule,
        what: 'generates a data key',
        action: 'kms:GenerateDataKey',
        resource: key,
        context: viaSqs,
        expected: 'allow',
      },
      {
        who: rule,
        what: 'decrypts a data key',
        action: 'kms:Decrypt',
        resource: key,
        context: viaSqs,
        expected: 'allow',
      },
      {
        who: rule,
        what: 'sends without TLS',
        action: 'sqs:SendMessage',
        resource: queue,
        context: { 'aws:SecureTransport': 'false' },
        expected: 'deny (explicit)',
      },
      {
        who: otherRule,
        what: 'delivers an event',
        action: 'sqs:SendMessage',
        resource: queue,
        context: tls,
        expected: 'deny (explicit)',
      },
      {
        who: otherRule,
        what: 'delivers to the DLQ',
        action: 'sqs:SendMessage',
        resource: dlq,
        context: tls,
        expected: 'deny (implicit)',
      },
      {
        who: admin,
        what: 'forges an event',
        action: 'sqs:SendMessage',
        resource: queue,
        context: tls,
        expected: 'deny (explicit)',
      },
      {
        who: admin,
        what: 'reads the queue without TLS',
        action: 'sqs:ReceiveMessage',
        resource: queue,
        context: { 'aws:SecureTransport': 'false' },
        expected: 'deny (explicit)',
      },
      {
        who: worker,
        what: 'receives',
        action: 'sqs:ReceiveMessage',
        resource: queue,
        context: tls,
        expected: 'allow',
      },
      {
        who: worker,
        what: 'deletes what it applied',
        action: 'sqs:DeleteMessage',
        resource: queue,
        context: tls,
        expected: 'allow',
      },
      {
        who: worker,
        what: 'decrypts through SQS',
        action: 'kms:Decrypt',
        resource: key,
        context: viaSqs,
        expected: 'allow',
      },
      {
        who: worker,
        what: 'decrypts directly',
        action: 'kms:Decrypt',
        resource: key,
        expected: 'deny (implicit)',
      },
      {
        who: worker,
        what: 'receives without TLS',
        action: 'sqs:ReceiveMessage',
        resource: queue,
        context: { 'aws:SecureTransport': 'false' },
        expected: 'deny (explicit)',
      },
      {
        who: worker,
        what: 'sends an event itself',
        action: 'sqs:SendMessage',
        resource: queue,
        context: tls,
        expected: 'deny (explicit)',
      },
      {
        who: worker,
        what: 'purges the queue',
        action: 'sqs:PurgeQueue',
        resource: queue,
        context: tls,
        expected: 'deny (implicit)',
      },
      {
        who: worker,
        what: 'receives from the DLQ',
        action: 'sqs:ReceiveMessage',
        resource: dlq,
        context: tls,
        expected: 'deny (implicit)',
      },
      {
        who: worker,
        what: 'receives from another queue',
        action: 'sqs:ReceiveMessage',
        resource: arn.queue('payroll-jobs'),
        context: tls,
        expected: 'deny (implicit)',
      },
      // The worker role is the bot role plus the queue: BotPolicy's grants and Denies hold for it.
      {
        who: worker,
        what: 'runs the deploy document',
        action: 'ssm:SendCommand',
        resource: arn.document(`${prefix}-deploy`),
        expected: 'allow',
      },
      {
        who: worker,
        what: 'reads a user parameter',
        action: 'ssm:GetParameter',
        resource: arn.param(`/${prefix}/users/111111111/openai-api-key`),
        expected: 'deny (explicit)',
      },
      {
        who: bot,
        what: 'receives',
        action: 'sqs:ReceiveMessage',
        resource: queue,
        context: tls,
        expected: 'deny (implicit)',
      },
      {
        who: bot,
        what: 'deletes',
        action: 'sqs:DeleteMessage',
        resource: queue,
        context: tls,
        expected: 'deny (implicit)',
      },
      {
        who: bot,
        what: 'decrypts through SQS',
        action: 'kms:Decrypt',
        resource: key,
        context: viaSqs,
        expected: 'deny (implicit)',
      },
    ];
  });

  /** The resource policy AWS consults for the row's resource: the queue's, or the key's. */
  function resourcePolicyFor(resourceArn: string): PolicyDocument | undefined {
    const props = (name: string) => resolved.Resources[name]?.Properties;
    if (resourceArn === arn.queue(ids.queue))
      return props('RolloutEventsQueuePolicy')?.PolicyDocument as PolicyDocument;
    if (resourceArn === arn.queue(ids.dlq))
      return props('RolloutEventsDeadLetterQueuePolicy')?.PolicyDocument as PolicyDocument;
    if (resourceArn === arn.key(ids.key)) return props('RolloutEventsKey')?.KeyPolicy as PolicyDocument;
    return undefined;
  }

  async function decide(row: Row): Promise<{ decision: Decision; explain: string; ignored: string[] }> {
    const resourcePolicy = resourcePolicyFor(row.resource);
    const simulation: Simulation = {
      request: {
        principal: row.who.principal,
        action: row.action,
        resource: { resource: row.resource, accountId: account },
        contextVariables: { ...row.who.context, ...row.context },
      },
      identityPolicies: row.who.policies,
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...(resourcePolicy ? { resourcePolicy } : {}),
    };
    const result = await runSimulation(simulation, {});
    if (result.resultType === 'error')
      throw new Error(`${row.who.label} ${row.what}: ${JSON.stringify(result.errors, null, 2)}`);
    const analysis = result.resultType === 'single' ? result.result : result.results[0];
    return {
      decision: decisionOf[result.overallResult] ?? (result.overallResult as Decision),
      explain: `${result.overallResult}\n${(JSON.stringify(analysis?.analysis, null, 1) ?? 'no analysis').slice(0, 3000)}`,
      ignored: analysis?.ignoredContextKeys ?? [],
    };
  }

  it('when every row is asked of the evaluator, then each decision is the expected one, with context keys that apply to the request', async () => {
    const wrong: string[] = [];
    const table: string[] = [];
    for (const row of rows) {
      const { decision, explain, ignored } = await decide(row);
      table.push(`${row.who.label.padEnd(34)} ${row.what.padEnd(36)} ${row.action.padEnd(22)} ${decision}`);
      if (decision !== row.expected)
        wrong.push(`${row.who.label} ${row.what}: expected ${row.expected}, evaluator says ${explain}`);
      if (ignored.length > 0)
        wrong.push(`${row.who.label} ${row.what}: context keys ignored: ${ignored.join(', ')}`);
    }
    console.log(
      `\nIAM decisions for the rollout events queues (${prefix}, ${env}, ${region}):\n${table.join('\n')}\n`,
    );
    expect(wrong, wrong.join('\n\n')).toEqual([]);
  });

  it('when the worker policy is resolved, then it names the queue and the key and nothing else', () => {
    const doc = resolved.Resources.WorkerRolloutEventsPolicy?.Properties.PolicyDocument as PolicyDocument;
    expect(doc.Statement).toEqual([
      {
        Sid: 'ConsumeRolloutEvents',
        Effect: 'Allow',
        Action: ['sqs:ReceiveMessage', 'sqs:DeleteMessage'],
        Resource: arn.queue(ids.queue),
      },
      {
        Sid: 'DecryptRolloutEventsViaSqs',
        Effect: 'Allow',
        Action: 'kms:Decrypt',
        Resource: arn.key(ids.key),
        Condition: { StringEquals: { 'kms:ViaService': `sqs.${region}.amazonaws.com` } },
      },
    ]);
    expect(resolved.Resources.WorkerRolloutEventsPolicy?.Properties.Roles).toEqual([roles.worker]);
  });
});

// ---------------------------------------------------------------------------------------------
// Deployed into moto
// ---------------------------------------------------------------------------------------------

describe('rollout events deployed into moto', () => {
  const motoRegion = 'us-east-1';
  let moto: Moto;
  let stack: Stack;
  let stackPrefix: string;

  const sqs = (action: string, body: object) => moto.json('sqs', `AmazonSQS.${action}`, body);
  const events = (action: string, body: object) => moto.json('events', `AWSEvents.${action}`, body);
  const attributesOf = async (url: string | undefined) =>
    (await sqs('GetQueueAttributes', { QueueUrl: url, AttributeNames: ['All'] })).Attributes as Record<
      string,
      string
    >;

  beforeAll(async () => {
    moto = motoAccount(testAccountId());
    stackPrefix = `rev${moto.accountId.slice(-6)}`;
    const vpc = await moto.ec2.send(new CreateVpcCommand({ CidrBlock: '10.30.0.0/16' }));
    const subnet = await moto.ec2.send(
      new CreateSubnetCommand({ VpcId: vpc.Vpc?.VpcId ?? '', CidrBlock: '10.30.1.0/24' }),
    );
    stack = await createStack(moto, `fleetbot-${stackPrefix}`, await readFile(templatePath, 'utf8'), {
      Prefix: stackPrefix,
      Env: 'test',
      VpcId: vpc.Vpc?.VpcId ?? '',
      SubnetId: subnet.Subnet?.SubnetId ?? '',
      AmiId: 'ami-12c6146b',
    });
  }, 120_000);
  afterAll(() => {
    moto?.destroy();
  });

  it('when the stack is created, then the queue outputs name both queues and the URL fits the parameter service.yaml takes it as', async () => {
    expect(stack.status).toBe('CREATE_COMPLETE');
    const { outputs } = stack;
    const service = await decodeTemplate(servicePath);
    const urlPattern = new RegExp(
      (service.Parameters as Record<string, { AllowedPattern?: string }>).RolloutEventsQueueUrl
        ?.AllowedPattern ?? '$^',
    );
    for (const [url, arnOf] of [
      [outputs.RolloutEventsQueueUrl, outputs.RolloutEventsQueueArn],
      [outputs.RolloutEventsDeadLetterQueueUrl, outputs.RolloutEventsDeadLetterQueueArn],
    ]) {
      expect(url).toMatch(urlPattern);
      expect(arnOf).toBe(`arn:aws:sqs:${motoRegion}:${moto.accountId}:${url?.split('/').pop()}`);
    }
    expect(outputs.RolloutEventsQueueUrl).not.toBe(outputs.RolloutEventsDeadLetterQueueUrl);
    expect(outputs.WorkerRoleArn).toBe(
      `arn:aws:iam::${moto.accountId}:role/${stackPrefix}-${motoRegion}-worker`,
    );
  });

  it("when SQS is asked, then both queues use the stack's rollout events key, the queue redrives to the dead-letter queue after 5 receives, keeps events an hour and long-polls 20 s", async () => {
    const aliases = (await moto.json('kms', 'TrentService.ListAliases', {})).Aliases as {
      AliasName: string;
      TargetKeyId?: string;
    }[];
    const keyId = aliases.find(
      (a) => a.AliasName === `alias/${stackPrefix}-test-rollout-events`,
    )?.TargetKeyId;
    expect(keyId).toBeDefined();
    const keyArn = `arn:aws:kms:${motoRegion}:${moto.accountId}:key/${keyId}`;
    expect(keyArn).not.toBe(stack.outputs.KmsKeyArn);

    const queue = await attributesOf(stack.outputs.RolloutEventsQueueUrl);
    expect(queue).toMatchObject({
      KmsMasterKeyId: keyArn,
      MessageRetentionPeriod: '3600',
      ReceiveMessageWaitTimeSeconds: '20',
    });
    expect(JSON.parse(queue.RedrivePolicy ?? '{}')).toEqual({
      deadLetterTargetArn: stack.outputs.RolloutEventsDeadLetterQueueArn,
      maxReceiveCount: 5,
    });
    const dlq = await attributesOf(stack.outputs.RolloutEventsDeadLetterQueueUrl);
    expect(dlq).toMatchObject({ KmsMasterKeyId: keyArn, MessageRetentionPeriod: '345600' });
    // moto has no AWS::SQS::QueuePolicy model (see the top of this file).
    expect(queue.Policy).toBeUndefined();

    const rotation = await moto.json('kms', 'TrentService.GetKeyRotationStatus', { KeyId: keyId });
    expect(rotation.KeyRotationEnabled).toBe(true);
  });

  it("when EventBridge is asked, then one rule on the default bus targets the queue with the stack's retry policy and dead-letter queue", async () => {
    const { RuleNames } = await events('ListRuleNamesByTarget', {
      TargetArn: stack.outputs.RolloutEventsQueueArn,
    });
    expect(RuleNames).toHaveLength(1);
    const name = (RuleNames as string[])[0];
    const rule = await events('DescribeRule', { Name: name });
    expect(rule).toMatchObject({ State: 'ENABLED', EventBusName: 'default' });
    const pattern = JSON.parse(String(rule.EventPattern)) as EventPattern;
    expect(pattern.detail['document-name']).toEqual([`${stackPrefix}-deploy`, 'AWS-RunPatchBaseline']);
    const { Targets } = await events('ListTargetsByRule', { Rule: name });
    expect(Targets).toEqual([
      {
        Id: expect.any(String),
        Arn: stack.outputs.RolloutEventsQueueArn,
        RetryPolicy: { MaximumEventAgeInSeconds: 900, MaximumRetryAttempts: 20 },
        DeadLetterConfig: { Arn: stack.outputs.RolloutEventsDeadLetterQueueArn },
      },
    ]);
  });

  it('when Run Command events reach the default bus, then only finished deploy and patch invocations arrive in the queue, as EventBridge sent them', async () => {
    const deploy = `${stackPrefix}-deploy`;
    const invocation = (document: string, status: string, instance: string, type = detailType) => ({
      Source: 'aws.ssm',
      DetailType: type,
      Resources: [`arn:aws:ec2:${motoRegion}:${moto.accountId}:instance/${instance}`],
      Detail: JSON.stringify({
        'command-id': `0b0b0b0b-0000-4000-8000-${instance.slice(-12)}`,
        'document-name': document,
        'instance-id': instance,
        'requested-date-time': '2026-01-01T00:00:00.000Z',
        status,
      }),
    });
    const put = await events('PutEvents', {
      Entries: [
        invocation(deploy, 'Success', 'i-0a00000000000000a'),
        invocation(deploy, 'InProgress', 'i-0b00000000000000b'),
        invocation('AWS-RunPatchBaseline', 'Failed', 'i-0c00000000000000c'),
        invocation('AWS-RunPatchBaseline', 'Pending', 'i-0d00000000000000d'),
        invocation('AWS-RunShellScript', 'Success', 'i-0e00000000000000e'),
        invocation(`${stackPrefix}-restart-service`, 'Success', 'i-0f00000000000000f'),
        // The command-level event, not the invocation's.
        invocation(deploy, 'Success', 'i-01000000000000001', 'EC2 Command Status-change Notification'),
        invocation(deploy, 'TimedOut', 'i-02000000000000002'),
        invocation(deploy, 'Cancelled', 'i-03000000000000003'),
        invocation(deploy, 'Delayed', 'i-04000000000000004'),
      ],
    });
    expect(put.FailedEntryCount).toBe(0);
    // PutEvents takes 10 entries at most.
    const more = await events('PutEvents', {
      Entries: [
        invocation('AWS-RunPatchBaseline', 'Undeliverable', 'i-05000000000000005'),
        invocation(deploy, 'Terminated', 'i-06000000000000006'),
        invocation(deploy, 'Cancelling', 'i-07000000000000007'),
      ],
    });
    expect(more.FailedEntryCount).toBe(0);

    const received: { 'detail-type': string; source: string; detail: Record<string, string> }[] = [];
    for (;;) {
      const { Messages } = await sqs('ReceiveMessage', {
        QueueUrl: stack.outputs.RolloutEventsQueueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 0,
      });
      const batch = (Messages ?? []) as { Body: string; ReceiptHandle: string }[];
      if (batch.length === 0) break;
      for (const m of batch) {
        received.push(JSON.parse(m.Body));
        await sqs('DeleteMessage', {
          QueueUrl: stack.outputs.RolloutEventsQueueUrl,
          ReceiptHandle: m.ReceiptHandle,
        });
      }
    }
    expect(
      received.map((e) => [e.detail['instance-id'], e.detail['document-name'], e.detail.status]).sort(),
    ).toEqual([
      ['i-02000000000000002', deploy, 'TimedOut'],
      ['i-03000000000000003', deploy, 'Cancelled'],
      ['i-05000000000000005', 'AWS-RunPatchBaseline', 'Undeliverable'],
      ['i-06000000000000006', deploy, 'Terminated'],
      ['i-0a00000000000000a', deploy, 'Success'],
      ['i-0c00000000000000c', 'AWS-RunPatchBaseline', 'Failed'],
    ]);
    expect(received.every((e) => e.source === 'aws.ssm' && e['detail-type'] === detailType)).toBe(true);
    const dlq = await attributesOf(stack.outputs.RolloutEventsDeadLetterQueueUrl);
    expect(dlq.ApproximateNumberOfMessages).toBe('0');
  });

  it('when IAM is asked, then the worker role trusts only ECS tasks of the account and holds the service policy and the consumer policy, and the bot role only the service policy', async () => {
    const workerRole = `${stackPrefix}-${motoRegion}-worker`;
    const botRole = `${stackPrefix}-${motoRegion}-bot`;
    expect((await trustPolicyOf(moto, workerRole)).Statement).toEqual([
      {
        Effect: 'Allow',
        Principal: { Service: 'ecs-tasks.amazonaws.com' },
        Action: 'sts:AssumeRole',
        Condition: { StringEquals: { 'aws:SourceAccount': moto.accountId } },
      },
    ]);
    const names = async (role: string) =>
      listOf<string>((await moto.query('iam', 'ListRolePolicies', { RoleName: role })).PolicyNames).sort();
    expect(await names(workerRole)).toEqual(['fleetbot-service', 'rollout-events-consumer']);
    expect(await names(botRole)).toEqual(['fleetbot-service']);
    const consumer = await inlinePolicyOf(moto, workerRole, 'rollout-events-consumer');
    expect(bySid(consumer, 'ConsumeRolloutEvents').Resource).toBe(stack.outputs.RolloutEventsQueueArn);
  });
});
