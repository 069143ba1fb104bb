// biome-ignore-all lint/suspicious/noTemplateCurlyInString: IAM policy variables are literal ${...} text here.
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { runSimulation, runUnsafeSimulation, type Simulation } from '@cloud-copilot/iam-simulate';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  list,
  loadTemplate,
  type PolicyDocument,
  resolveTemplate,
  type Template,
} from '../support/cfn-template.js';

/*
 * The security claims of infra/fleetbot.yaml, decided by an IAM policy evaluator
 * (@cloud-copilot/iam-simulate) on the template's own policies, resolved for one account, region,
 * Prefix and Env. Each row is one request with the context keys AWS supplies for it; the evaluator gets
 * the principal's identity policies (every policy the template attaches to that role, including any
 * AWS managed policy it names) and, for KMS, the key policy (same-account semantics).
 *
 * The matrix is printed and must equal the one in infra/README.md (between the iam-matrix markers),
 * so the docs cannot drift. FLEETBOT_WRITE_IAM_MATRIX=1 rewrites it there instead.
 *
 * What this cannot show: that AWS really supplies a context key (ec2:SourceInstanceARN reaching SSM
 * is checked on a real account by infra/check-secret-isolation.sh), and anything outside these
 * policies (SCPs, other policies on the same principals).
 */

const readmePath = fileURLToPath(new URL('../../infra/README.md', import.meta.url));
const partition = 'aws';
const region = 'eu-west-1';
const account = '111122223333';
const prefix = 'fleetbot';
const env = 'prod';
const arn = {
  param: (name: string) => `arn:${partition}:ssm:${region}:${account}:parameter/${name.replace(/^\//, '')}`,
  instance: (id: string) => `arn:${partition}:ec2:${region}:${account}:instance/${id}`,
  document: (name: string) =>
    name.startsWith('AWS-')
      ? `arn:${partition}:ssm:${region}::document/${name}`
      : `arn:${partition}:ssm:${region}:${account}:document/${name}`,
  role: (name: string) => `arn:${partition}:iam::${account}:role/${name}`,
  session: (role: string, name: string) => `arn:${partition}:sts::${account}:assumed-role/${role}/${name}`,
  key: (id: string) => `arn:${partition}:kms:${region}:${account}:key/${id}`,
  fn: (name: string) => `arn:${partition}:lambda:${region}:${account}:function:${name}`,
};
const secretsKeyId = '11111111-2222-3333-4444-555555555555';
const sessionsKeyId = '66666666-7777-8888-9999-000000000000';
const launchTemplateId = 'lt-0123456789abcdef0';
const instanceA = 'i-0aaaaaaaaaaaaaaaa';
const instanceB = 'i-0bbbbbbbbbbbbbbbb';
const strayInstance = 'i-0cccccccccccccccc';
// RunInstances authorizes the instance it is about to create; any id stands for it.
const newInstance = 'i-0dddddddddddddddd';
const paramA = `/${prefix}/users/111111111/openai-api-key`;
const paramB = `/${prefix}/users/222222222/openai-api-key`;
const roles = {
  instance: `${prefix}-${region}-instance`,
  bot: `${prefix}-${region}-bot`,
  binder: `${prefix}-${region}-secret-binder`,
};

/**
 * AWS managed policies a role in the template may name, as AWS publishes them, so that attaching one
 * again shows up here. AmazonSSMManagedInstanceCore v2:
 * https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonSSMManagedInstanceCore.html
 */
const awsManagedPolicies: Record<string, PolicyDocument> = {
  [`arn:${partition}:iam::aws:policy/AmazonSSMManagedInstanceCore`]: {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: [
          'ssm:DescribeAssociation',
          'ssm:GetDeployablePatchSnapshotForInstance',
          'ssm:GetDocument',
          'ssm:DescribeDocument',
          'ssm:GetManifest',
          'ssm:GetParameter',
          'ssm:GetParameters',
          'ssm:ListAssociations',
          'ssm:ListInstanceAssociations',
          'ssm:PutInventory',
          'ssm:PutComplianceItems',
          'ssm:PutConfigurePackageResult',
          'ssm:UpdateAssociationStatus',
          'ssm:UpdateInstanceAssociationStatus',
          'ssm:UpdateInstanceInformation',
        ],
        Resource: '*',
      },
      {
        Effect: 'Allow',
        Action: [
          'ssmmessages:CreateControlChannel',
          'ssmmessages:CreateDataChannel',
          'ssmmessages:OpenControlChannel',
          'ssmmessages:OpenDataChannel',
        ],
        Resource: '*',
      },
      {
        Effect: 'Allow',
        Action: [
          'ec2messages:AcknowledgeMessage',
          'ec2messages:DeleteMessage',
          'ec2messages:FailMessage',
          'ec2messages:GetEndpoint',
          'ec2messages:GetMessages',
          'ec2messages:SendReply',
        ],
        Resource: '*',
      },
    ],
  },
};

/** A principal in the account that is none of the stack's: broad SSM reads, and KMS decrypt too. */
const unrelatedPolicy: PolicyDocument = {
  Version: '2012-10-17',
  Statement: [
    { Effect: 'Allow', Action: ['ssm:Describe*', 'ssm:Get*', 'ssm:List*'], Resource: '*' },
    { Effect: 'Allow', Action: 'kms:Decrypt', Resource: '*' },
  ],
};

/** Actions whose Service Authorization Reference entry lists kms:EncryptionContext:${EncryptionContextKey}. */
const kmsEncryptionContextActions = ['kms:Decrypt', 'kms:Encrypt', 'kms:GenerateDataKey'];

type Decision = 'allow' | 'deny (explicit)' | 'deny (implicit)';
const decisionOf: Record<string, Decision> = {
  Allowed: 'allow',
  ExplicitlyDenied: 'deny (explicit)',
  ImplicitlyDenied: 'deny (implicit)',
};

interface Principal {
  label: string;
  session: string;
  context: Record<string, string>;
  policies(): { name: string; policy: PolicyDocument }[];
}

interface Row {
  who: Principal;
  what: string;
  action: string;
  resource: string;
  context?: Record<string, string | string[]>;
  /** For kms:* rows: which key's policy is the resource policy. */
  key?: 'SecretsKey' | 'SessionsKey';
  expected: Decision;
}

describe('IAM evaluator: who may do what with the deployed stack', () => {
  let resolved: Template;
  let rows: Row[];

  const policyOf = (name: string) =>
    resolved.Resources[name]?.Properties.PolicyDocument as PolicyDocument | undefined;

  /** Every policy the template gives a role: inline, AWS::IAM::Policy resources and managed ARNs. */
  const rolePolicies = (role: string, roleName: string) => () => {
    const found: { name: string; policy: PolicyDocument }[] = [];
    for (const [name, r] of Object.entries(resolved.Resources)) {
      if (r.Type === 'AWS::IAM::Policy' && list(r.Properties.Roles).includes(roleName))
        found.push({ name, policy: r.Properties.PolicyDocument as PolicyDocument });
    }
    const props = resolved.Resources[role]?.Properties ?? {};
    for (const p of list(props.Policies) as { PolicyName: string; PolicyDocument: PolicyDocument }[])
      found.push({ name: p.PolicyName, policy: p.PolicyDocument });
    for (const managed of list(props.ManagedPolicyArns) as string[]) {
      const doc = awsManagedPolicies[managed];
      if (!doc) throw new Error(`${role} carries ${managed}, whose document this test does not know`);
      found.push({ name: managed, policy: doc });
    }
    return found;
  };

  const principal = (label: string, roleName: string, sessionName: string, roleId: string) => ({
    label,
    session: arn.session(roleName, sessionName),
    context: {
      'aws:PrincipalArn': arn.role(roleName),
      'aws:PrincipalAccount': account,
      'aws:userid': `${roleId}:${sessionName}`,
    },
  });

  beforeAll(async () => {
    const template = await loadTemplate();
    const keyArn = arn.key(secretsKeyId);
    resolved = resolveTemplate(template, {
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
      physicalIds: {
        InstanceRole: roles.instance,
        BotRole: roles.bot,
        SecretBinderRole: roles.binder,
        InstanceProfile: roles.instance,
        BotInstanceProfile: roles.bot,
        InstanceSecurityGroup: 'sg-0123456789abcdef0',
        EndpointSecurityGroup: 'sg-0fedcba9876543210',
        LaunchTemplate: launchTemplateId,
        SecretsKey: secretsKeyId,
        SecretsKeyAlias: `alias/${prefix}-secrets`,
        SessionsKey: sessionsKeyId,
        SessionsKeyAlias: `alias/${prefix}-${env}-sessions`,
        SessionLogGroup: `/${prefix}/${env}/sessions`,
        SessionLogBucket: `${prefix}-sessionlogbucket-1a2b3c4d5e6f`,
        SecretBinderFunction: `${prefix}-secret-binder`,
        SecretBinderLogGroup: `/aws/lambda/${prefix}-secret-binder`,
        DeployDocument: `${prefix}-deploy`,
        BootstrapCheckDocument: `${prefix}-bootstrap-check`,
        RestartDocument: `${prefix}-restart-service`,
        SessionPreferencesDocument: 'SSM-SessionManagerRunShell',
        SessionOperatorPolicy: `arn:${partition}:iam::${account}:policy/${prefix}-${env}-session-operator`,
        // The worker's role and the rollout events queues (test/infra/rollout-events.test.ts decides those).
        WorkerRole: `${prefix}-${region}-worker`,
        RolloutEventsKey: '77777777-8888-9999-aaaa-bbbbbbbbbbbb',
        RolloutEventsQueue: `https://sqs.${region}.amazonaws.com/${account}/${prefix}-rollout-events`,
        RolloutEventsDeadLetterQueue: `https://sqs.${region}.amazonaws.com/${account}/${prefix}-rollout-events-dlq`,
      },
      attributes: {
        'InstanceRole.Arn': arn.role(roles.instance),
        'BotRole.Arn': arn.role(roles.bot),
        'SecretBinderRole.Arn': arn.role(roles.binder),
        'InstanceProfile.Arn': `arn:${partition}:iam::${account}:instance-profile/${roles.instance}`,
        'InstanceSecurityGroup.GroupId': 'sg-0123456789abcdef0',
        'SecretsKey.Arn': keyArn,
        'SessionsKey.Arn': arn.key(sessionsKeyId),
        'SessionLogBucket.Arn': `arn:${partition}:s3:::${prefix}-sessionlogbucket-1a2b3c4d5e6f`,
        'SecretBinderFunction.Arn': arn.fn(`${prefix}-secret-binder`),
        'SecretBinderLogGroup.Arn': `arn:${partition}:logs:${region}:${account}:log-group:/aws/lambda/${prefix}-secret-binder:*`,
        'WorkerRole.Arn': arn.role(`${prefix}-${region}-worker`),
        'RolloutEventsKey.Arn': arn.key('77777777-8888-9999-aaaa-bbbbbbbbbbbb'),
        'RolloutEventsQueue.Arn': `arn:${partition}:sqs:${region}:${account}:${prefix}-rollout-events`,
        'RolloutEventsDeadLetterQueue.Arn': `arn:${partition}:sqs:${region}:${account}:${prefix}-rollout-events-dlq`,
        'RolloutEventsRule.Arn': `arn:${partition}:events:${region}:${account}:rule/${prefix}-rollout-events`,
      },
    });

    const instance: Principal = {
      ...principal('instance of user A', roles.instance, instanceA, 'AROAINSTANCEEXAMPLE'),
      policies: rolePolicies('InstanceRole', roles.instance),
    };
    instance.context['ec2:SourceInstanceARN'] = arn.instance(instanceA);
    const noSource: Principal = {
      ...principal('instance role, no source instance', roles.instance, 'elsewhere', 'AROAINSTANCEEXAMPLE'),
      policies: rolePolicies('InstanceRole', roles.instance),
    };
    const bot: Principal = {
      ...principal('bot', roles.bot, 'fleetbot-task', 'AROABOTEXAMPLE'),
      policies: rolePolicies('BotRole', roles.bot),
    };
    const binder: Principal = {
      ...principal('secret binder', roles.binder, `${prefix}-secret-binder`, 'AROABINDEREXAMPLE'),
      policies: rolePolicies('SecretBinderRole', roles.binder),
    };
    const admin: Principal = {
      ...principal(
        'admin + operator policy',
        'AWSReservedSSO_Admin_0123456789abcdef',
        'alice',
        'AROAADMINEXAMPLE',
      ),
      policies: () => [
        { name: 'SessionOperatorPolicy', policy: policyOf('SessionOperatorPolicy') as PolicyDocument },
      ],
    };
    const unrelated: Principal = {
      ...principal('unrelated (broad SSM read)', 'reporting', 'report-job', 'AROAREPORTINGEXAMPLE'),
      policies: () => [{ name: 'broad-ssm-read', policy: unrelatedPolicy }],
    };

    const tagged = (instanceArn: string) => ({
      'ssm:resourceTag/InstanceArn': instanceArn,
      'aws:ResourceTag/InstanceArn': instanceArn,
    });
    const fleetTags = (tags: Record<string, string>) =>
      Object.fromEntries(
        Object.entries(tags).flatMap(([k, v]) => [
          [`ssm:resourceTag/${k}`, v],
          [`aws:ResourceTag/${k}`, v],
        ]),
      );
    const viaSsm = (param: string) => ({
      'kms:ViaService': `ssm.${region}.amazonaws.com`,
      'kms:EncryptionContext:PARAMETER_ARN': arn.param(param),
    });
    const launch = {
      'ec2:LaunchTemplate': `arn:${partition}:ec2:${region}:${account}:launch-template/${launchTemplateId}`,
      'ec2:MetadataHttpTokens': 'required',
      'ec2:MetadataHttpPutResponseHopLimit': '1',
      'ec2:InstanceType': 't3.small',
      'aws:RequestTag/app': 'fleetbot',
      'aws:RequestTag/env': env,
      'aws:RequestTag/user': '111111111',
      'aws:TagKeys': ['app', 'env', 'managed-by', 'user', 'Name'],
    };
    const sessionContext = (owner: string) => ({
      'ssm:resourceTag/aws:ssmmessages:session-id': owner,
      'ssm:resourceTag/aws:ssmmessages:target-id': instanceA,
    });

    rows = [
      // Hole 1: what an instance reads.
      {
        who: instance,
        what: "reads its user's parameter",
        action: 'ssm:GetParameter',
        resource: arn.param(paramA),
        context: tagged(arn.instance(instanceA)),
        expected: 'allow',
      },
      {
        who: instance,
        what: "decrypts its user's parameter through SSM",
        action: 'kms:Decrypt',
        resource: arn.key(secretsKeyId),
        key: 'SecretsKey',
        context: viaSsm(paramA),
        expected: 'allow',
      },
      {
        who: instance,
        what: "reads user B's parameter",
        action: 'ssm:GetParameter',
        resource: arn.param(paramB),
        context: tagged(arn.instance(instanceB)),
        expected: 'deny (explicit)',
      },
      {
        who: instance,
        what: 'reads an untagged user parameter',
        action: 'ssm:GetParameters',
        resource: arn.param(paramB),
        expected: 'deny (explicit)',
      },
      {
        who: instance,
        what: "reads a parameter outside the users' path",
        action: 'ssm:GetParameter',
        resource: arn.param('/prod/db/password'),
        expected: 'deny (explicit)',
      },
      {
        who: instance,
        what: 'reads an SSM document',
        action: 'ssm:GetDocument',
        resource: arn.document(`${prefix}-deploy`),
        expected: 'deny (implicit)',
      },
      {
        who: noSource,
        what: "reads user A's parameter",
        action: 'ssm:GetParameter',
        resource: arn.param(paramA),
        context: tagged(arn.instance(instanceA)),
        expected: 'deny (explicit)',
      },
      {
        who: instance,
        what: 'decrypts a secret directly, not through SSM',
        action: 'kms:Decrypt',
        resource: arn.key(secretsKeyId),
        key: 'SecretsKey',
        context: { 'kms:EncryptionContext:PARAMETER_ARN': arn.param(paramA) },
        expected: 'deny (explicit)',
      },
      {
        who: instance,
        what: "tags user B's parameter with its own ARN",
        action: 'ssm:AddTagsToResource',
        resource: arn.param(paramB),
        context: { 'aws:TagKeys': ['InstanceArn'], 'aws:RequestTag/InstanceArn': arn.instance(instanceA) },
        expected: 'deny (explicit)',
      },
      {
        who: instance,
        what: 'sends a command to another instance',
        action: 'ssm:SendCommand',
        resource: arn.instance(instanceB),
        context: fleetTags({ app: 'fleetbot', env }),
        expected: 'deny (implicit)',
      },
      {
        who: instance,
        what: 'starts a session on another instance',
        action: 'ssm:StartSession',
        resource: arn.instance(instanceB),
        context: fleetTags({ app: 'fleetbot', env }),
        expected: 'deny (implicit)',
      },
      {
        who: instance,
        what: 'reports to SSM (agent ping)',
        action: 'ssm:UpdateInstanceInformation',
        resource: '*',
        context: { 'ec2:SourceInstanceARN': arn.instance(instanceA) },
        expected: 'allow',
      },
      {
        who: instance,
        what: 'decrypts a session data key',
        action: 'kms:Decrypt',
        resource: arn.key(sessionsKeyId),
        key: 'SessionsKey',
        context: {
          'kms:EncryptionContext:aws:ssm:SessionId': 'alice-0123456789abcdef0',
          'kms:EncryptionContext:aws:ssm:TargetId': instanceA,
        },
        expected: 'allow',
      },
      // Hole 2: what the bot may do.
      {
        who: bot,
        what: 'reads a user parameter',
        action: 'ssm:GetParameter',
        resource: arn.param(paramA),
        context: tagged(arn.instance(instanceA)),
        expected: 'deny (explicit)',
      },
      {
        who: bot,
        what: 'decrypts a user parameter through SSM',
        action: 'kms:Decrypt',
        resource: arn.key(secretsKeyId),
        key: 'SecretsKey',
        context: viaSsm(paramA),
        expected: 'deny (explicit)',
      },
      {
        who: bot,
        what: 'encrypts a user parameter through SSM',
        action: 'kms:Encrypt',
        resource: arn.key(secretsKeyId),
        key: 'SecretsKey',
        context: viaSsm(paramA),
        expected: 'allow',
      },
      {
        who: bot,
        what: 'tags a parameter InstanceArn (binding)',
        action: 'ssm:AddTagsToResource',
        resource: arn.param(paramA),
        context: { 'aws:TagKeys': ['InstanceArn'], 'aws:RequestTag/InstanceArn': arn.instance(instanceA) },
        expected: 'deny (explicit)',
      },
      {
        who: bot,
        what: 'tags a parameter instancearn (other case)',
        action: 'ssm:AddTagsToResource',
        resource: arn.param(paramA),
        context: { 'aws:TagKeys': ['instancearn'], 'aws:RequestTag/instancearn': arn.instance(instanceA) },
        expected: 'deny (explicit)',
      },
      {
        who: bot,
        what: 'tags a parameter app/user/kind',
        action: 'ssm:AddTagsToResource',
        resource: arn.param(paramA),
        context: { 'aws:TagKeys': ['app', 'user', 'kind'], 'aws:RequestTag/user': '111111111' },
        expected: 'allow',
      },
      {
        who: bot,
        what: 'removes the InstanceArn tag',
        action: 'ssm:RemoveTagsFromResource',
        resource: arn.param(paramA),
        context: { 'aws:TagKeys': ['InstanceArn'] },
        expected: 'allow',
      },
      {
        who: bot,
        what: 'invokes the secret binder',
        action: 'lambda:InvokeFunction',
        resource: arn.fn(`${prefix}-secret-binder`),
        expected: 'allow',
      },
      {
        who: bot,
        what: 'invokes another function',
        action: 'lambda:InvokeFunction',
        resource: arn.fn('payroll-export'),
        expected: 'deny (implicit)',
      },
      {
        who: bot,
        what: 'runs AWS-RunShellScript',
        action: 'ssm:SendCommand',
        resource: arn.document('AWS-RunShellScript'),
        expected: 'deny (explicit)',
      },
      {
        who: bot,
        what: 'runs the deploy document (document)',
        action: 'ssm:SendCommand',
        resource: arn.document(`${prefix}-deploy`),
        expected: 'allow',
      },
      {
        who: bot,
        what: 'runs a command on a fleet instance',
        action: 'ssm:SendCommand',
        resource: arn.instance(instanceA),
        context: fleetTags({ app: 'fleetbot', env }),
        expected: 'allow',
      },
      {
        who: bot,
        what: 'runs a command on an instance without app=fleetbot',
        action: 'ssm:SendCommand',
        resource: arn.instance(strayInstance),
        context: fleetTags({ env }),
        expected: 'deny (implicit)',
      },
      {
        who: bot,
        what: 'launches from the launch template with IMDSv2',
        action: 'ec2:RunInstances',
        resource: arn.instance(newInstance),
        context: launch,
        expected: 'allow',
      },
      {
        who: bot,
        what: 'launches without the launch template',
        action: 'ec2:RunInstances',
        resource: arn.instance(newInstance),
        context: Object.fromEntries(Object.entries(launch).filter(([k]) => k !== 'ec2:LaunchTemplate')),
        expected: 'deny (implicit)',
      },
      {
        who: bot,
        what: 'launches with IMDSv1 allowed',
        action: 'ec2:RunInstances',
        resource: arn.instance(newInstance),
        context: { ...launch, 'ec2:MetadataHttpTokens': 'optional' },
        expected: 'deny (implicit)',
      },
      {
        who: bot,
        what: "reads an instance's UserData",
        action: 'ec2:DescribeInstanceAttribute',
        resource: arn.instance(instanceA),
        context: { 'ec2:Attribute': 'userData' },
        expected: 'deny (implicit)',
      },
      {
        who: bot,
        what: 'terminates an instance outside the fleet',
        action: 'ec2:TerminateInstances',
        resource: arn.instance(strayInstance),
        context: { 'aws:ResourceTag/app': 'payroll', 'ec2:ResourceTag/app': 'payroll' },
        expected: 'deny (implicit)',
      },
      {
        who: bot,
        what: 'starts a session',
        action: 'ssm:StartSession',
        resource: arn.instance(instanceA),
        context: fleetTags({ app: 'fleetbot', env }),
        expected: 'deny (implicit)',
      },
      // Binding is the binder's alone.
      {
        who: binder,
        what: 'tags a user parameter InstanceArn',
        action: 'ssm:AddTagsToResource',
        resource: arn.param(paramA),
        context: { 'aws:TagKeys': ['InstanceArn'], 'aws:RequestTag/InstanceArn': arn.instance(instanceA) },
        expected: 'allow',
      },
      {
        who: binder,
        what: 'tags a user parameter with another key',
        action: 'ssm:AddTagsToResource',
        resource: arn.param(paramA),
        context: { 'aws:TagKeys': ['user'], 'aws:RequestTag/user': '222222222' },
        expected: 'deny (implicit)',
      },
      {
        who: binder,
        what: 'reads a user parameter',
        action: 'ssm:GetParameter',
        resource: arn.param(paramA),
        context: tagged(arn.instance(instanceA)),
        expected: 'deny (explicit)',
      },
      // Hole 3: Session Manager for admins.
      {
        who: admin,
        what: 'starts a session on a fleet instance',
        action: 'ssm:StartSession',
        resource: arn.instance(instanceA),
        context: { ...fleetTags({ app: 'fleetbot', env }), 'ssm:SessionDocumentAccessCheck': 'true' },
        expected: 'allow',
      },
      {
        who: admin,
        what: 'starts it with SSM-SessionManagerRunShell',
        action: 'ssm:StartSession',
        resource: arn.document('SSM-SessionManagerRunShell'),
        context: { 'ssm:SessionDocumentAccessCheck': 'true' },
        expected: 'allow',
      },
      {
        who: admin,
        what: 'starts a session on an instance without app=fleetbot',
        action: 'ssm:StartSession',
        resource: arn.instance(strayInstance),
        context: { ...fleetTags({ env }), 'ssm:SessionDocumentAccessCheck': 'true' },
        expected: 'deny (implicit)',
      },
      {
        who: admin,
        what: 'starts a session on another env',
        action: 'ssm:StartSession',
        resource: arn.instance(instanceB),
        context: {
          ...fleetTags({ app: 'fleetbot', env: 'staging' }),
          'ssm:SessionDocumentAccessCheck': 'true',
        },
        expected: 'deny (implicit)',
      },
      {
        who: admin,
        what: 'forwards a port with AWS-StartPortForwardingSession',
        action: 'ssm:StartSession',
        resource: arn.document('AWS-StartPortForwardingSession'),
        context: { 'ssm:SessionDocumentAccessCheck': 'true' },
        expected: 'allow',
      },
      {
        who: admin,
        what: 'forwards a port with ...ToRemoteHost',
        action: 'ssm:StartSession',
        resource: arn.document('AWS-StartPortForwardingSessionToRemoteHost'),
        context: { 'ssm:SessionDocumentAccessCheck': 'true' },
        expected: 'deny (implicit)',
      },
      {
        who: admin,
        what: 'terminates its own session',
        action: 'ssm:TerminateSession',
        resource: `arn:${partition}:ssm:${region}:${account}:session/alice-0123456789abcdef0`,
        context: sessionContext('AROAADMINEXAMPLE:alice'),
        expected: 'allow',
      },
      {
        who: admin,
        what: "terminates another user's session",
        action: 'ssm:TerminateSession',
        resource: `arn:${partition}:ssm:${region}:${account}:session/bob-0123456789abcdef0`,
        context: sessionContext('AROAADMINEXAMPLE:bob'),
        expected: 'deny (implicit)',
      },
      {
        who: admin,
        what: 'generates a session data key',
        action: 'kms:GenerateDataKey',
        resource: arn.key(sessionsKeyId),
        key: 'SessionsKey',
        context: {
          'kms:EncryptionContext:aws:ssm:SessionId': 'alice-0123456789abcdef0',
          'kms:EncryptionContext:aws:ssm:TargetId': instanceA,
        },
        expected: 'allow',
      },
      {
        who: admin,
        what: 'decrypts a user parameter through SSM',
        action: 'kms:Decrypt',
        resource: arn.key(secretsKeyId),
        key: 'SecretsKey',
        context: viaSsm(paramA),
        expected: 'deny (explicit)',
      },
      // Everyone else in the account.
      {
        who: unrelated,
        what: 'gets a user parameter (ciphertext only)',
        action: 'ssm:GetParameter',
        resource: arn.param(paramA),
        context: tagged(arn.instance(instanceA)),
        expected: 'allow',
      },
      {
        who: unrelated,
        what: 'decrypts it through SSM',
        action: 'kms:Decrypt',
        resource: arn.key(secretsKeyId),
        key: 'SecretsKey',
        context: viaSsm(paramA),
        expected: 'deny (explicit)',
      },
      {
        who: unrelated,
        what: 'decrypts with the key directly',
        action: 'kms:Decrypt',
        resource: arn.key(secretsKeyId),
        key: 'SecretsKey',
        context: {},
        expected: 'deny (explicit)',
      },
    ];
  });

  async function decide(row: Row): Promise<{ decision: Decision; explain: string; ignored: string[] }> {
    const resourcePolicy = row.key
      ? (resolved.Resources[row.key]?.Properties.KeyPolicy as PolicyDocument | undefined)
      : undefined;
    if (row.key && !resourcePolicy) throw new Error(`no key policy for ${row.key}`);
    const simulation: Simulation = {
      request: {
        principal: row.who.session,
        action: row.action,
        resource: { resource: row.resource, accountId: account },
        contextVariables: { ...row.who.context, ...row.context },
      },
      identityPolicies: row.who.policies(),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      ...(resourcePolicy ? { resourcePolicy } : {}),
    };
    // AWS-owned documents (AWS-RunShellScript, AWS-StartPortForwardingSession...) have ARNs without an
    // account, as AWS authorizes them and as the policies name them, but the evaluator's resource-type
    // pattern requires one and refuses the request; these rows skip its input validation (and give
    // the decision without the statement-level explanation).
    // Likewise kms:EncryptionContext:<key>: the evaluator matches variable context keys only after a
    // '/', so it drops these ':'-separated ones although KMS supplies them (the Service Authorization
    // Reference lists kms:EncryptionContext:${EncryptionContextKey} for Decrypt, Encrypt and
    // GenerateDataKey); they are checked against that entry here instead.
    const encryptionContext = Object.keys(row.context ?? {}).filter((k) =>
      k.startsWith('kms:EncryptionContext:'),
    );
    if (row.resource.includes('::document/') || encryptionContext.length > 0) {
      const unknown =
        encryptionContext.length > 0 && !kmsEncryptionContextActions.includes(row.action)
          ? encryptionContext
          : [];
      // Its resource policy must carry a name (the unvalidated path reads one and does not set it);
      // a pre-validated policy document is how @cloud-copilot/iam-policy takes one.
      const named = resourcePolicy
        ? {
            resourcePolicy: {
              __validated: true,
              policyDocument: resourcePolicy,
              metadata: { name: row.key },
            },
          }
        : {};
      const decision = runUnsafeSimulation({ ...simulation, ...named }, {});
      return {
        decision: decisionOf[decision] ?? (decision as Decision),
        explain: `${decision} (evaluated without input validation)`,
        ignored: unknown,
      };
    }
    const result = await runSimulation(simulation, {});
    if (result.resultType === 'error')
      throw new Error(`${row.what}: ${JSON.stringify(result.errors, null, 2)}`);
    const analysis = result.resultType === 'single' ? result.result : result.results[0];
    const statements = (kind: 'identityAnalysis' | 'resourceAnalysis') => {
      const a = analysis?.analysis?.[kind] as
        | {
            allowStatements?: { policyId?: string; statement?: { Sid?: string } }[];
            denyStatements?: { policyId?: string; statement?: { Sid?: string } }[];
          }
        | undefined;
      const name = (s: { policyId?: string; statement?: { Sid?: string } }) =>
        `${s.policyId}/${s.statement?.Sid ?? '?'}`;
      return `${kind}: allow [${(a?.allowStatements ?? []).map(name).join(', ')}] deny [${(a?.denyStatements ?? []).map(name).join(', ')}]`;
    };
    return {
      decision: decisionOf[result.overallResult] ?? (result.overallResult as Decision),
      explain: `${result.overallResult}; ${statements('identityAnalysis')}; ${statements('resourceAnalysis')}\n${(JSON.stringify(analysis?.analysis, null, 1) ?? 'no analysis').slice(0, 4000)}`,
      ignored: analysis?.ignoredContextKeys ?? [],
    };
  }

  const short = (resource: string) =>
    resource
      .replace(`arn:${partition}:ssm:${region}:${account}:parameter`, 'parameter ')
      .replace(`arn:${partition}:ssm:${region}:${account}:document/`, 'document ')
      .replace(`arn:${partition}:ssm:${region}::document/`, 'document ')
      .replace(`arn:${partition}:ssm:${region}:${account}:session/`, 'session ')
      .replace(`arn:${partition}:ec2:${region}:${account}:instance/`, 'instance ')
      .replace(arn.key(secretsKeyId), 'SecretsKey')
      .replace(arn.key(sessionsKeyId), 'SessionsKey')
      .replace(`arn:${partition}:lambda:${region}:${account}:function:`, 'function ');

  function matrix(results: { row: Row; decision: Decision }[]): { text: string; markdown: string } {
    const header = ['principal', 'request', 'action', 'resource', 'decision'];
    const cells = results.map(({ row, decision }) => [
      row.who.label,
      row.what,
      row.action,
      short(row.resource),
      decision,
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
    const line = (c: string[]) =>
      c
        .map((x, i) => x.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd();
    const text = [line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
    const md = (c: string[]) => `| ${c.map((x) => x.replace(/\|/g, '\\|')).join(' | ')} |`;
    const markdown = [
      md(header),
      md(header.map(() => '---')),
      ...cells.map((c) => md(c.map((x, i) => (i === 2 || i === 3 ? `\`${x}\`` : x)))),
    ].join('\n');
    return { text, markdown };
  }

  it('when every row is asked of the evaluator, then each decision is the expected one, with context keys that apply to the request', async () => {
    const results: { row: Row; decision: Decision }[] = [];
    const wrong: string[] = [];
    for (const row of rows) {
      const { decision, explain, ignored } = await decide(row);
      results.push({ row, decision });
      if (decision !== row.expected)
        wrong.push(`${row.who.label} ${row.what}: expected ${row.expected}, evaluator says ${explain}`);
      // A key AWS would not send with this request is one the evaluator drops, and the row proves nothing.
      if (ignored.length > 0)
        wrong.push(`${row.who.label} ${row.what}: context keys ignored: ${ignored.join(', ')}`);
    }
    const { text, markdown } = matrix(results);
    console.log(`\nIAM decisions for infra/fleetbot.yaml (${prefix}, ${env}, ${region}):\n${text}\n`);
    expect(wrong, wrong.join('\n\n')).toEqual([]);

    const readme = await readFile(readmePath, 'utf8');
    const start = '<!-- iam-matrix:start -->\n';
    const end = '\n<!-- iam-matrix:end -->';
    const from = readme.indexOf(start);
    const to = readme.indexOf(end);
    if (process.env.FLEETBOT_WRITE_IAM_MATRIX === '1' && from >= 0 && to > from) {
      await writeFile(readmePath, `${readme.slice(0, from + start.length)}${markdown}${readme.slice(to)}`);
      return;
    }
    expect(from, 'infra/README.md has the iam-matrix markers').toBeGreaterThanOrEqual(0);
    expect(
      readme.slice(from + start.length, to),
      'infra/README.md matrix (FLEETBOT_WRITE_IAM_MATRIX=1 rewrites it)',
    ).toBe(markdown);
  });

  it('when the template is resolved, then the evaluator sees the instance role without AmazonSSMManagedInstanceCore and the session preferences present', () => {
    expect(resolved.Resources.InstanceRole?.Properties.ManagedPolicyArns).toBeUndefined();
    expect(resolved.Resources.SessionPreferencesDocument).toBeDefined();
    // Policy variables stay for IAM to resolve per request.
    expect(JSON.stringify(policyOf('InstancePolicy'))).toContain('${ec2:SourceInstanceARN}');
    expect(JSON.stringify(policyOf('SessionOperatorPolicy'))).toContain('${aws:userid}');
  });
});
