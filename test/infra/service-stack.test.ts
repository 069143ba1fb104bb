// biome-ignore-all lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub strings are literal ${...} text here.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  CreateSubnetCommand,
  CreateVpcCommand,
  DescribeSecurityGroupsCommand,
  type IpPermission,
} from '@aws-sdk/client-ec2';
import { GetParameterCommand, PutParameterCommand } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CollectionTag, parse, type ScalarTag, YAMLSeq } from 'yaml';
import { createSlackAdapter } from '../../src/bot/slack.js';
import { createTelegramAdapter } from '../../src/bot/telegram.js';
import { ConfigError, configKeys, loadConfig, parseRoles } from '../../src/config.js';
import { testAccountId } from '../peers/aws-account.js';
import { freePort } from '../peers/free-port.js';
import { startFakeSlack } from '../peers/slack-api.js';
import { startFakeTelegram } from '../peers/telegram-api.js';
import type { PolicyDocument, Statement } from '../support/cfn-template.js';
import {
  createStack,
  createStackParams,
  inlinePolicyOf,
  type Moto,
  motoAccount,
  type Stack,
  trustPolicyOf,
} from '../support/moto-account.js';
import { capturedLogger } from '../support/quiet-log.js';
import { listOf } from '../support/xml.js';

/*
 * infra/service.yaml (fleetbot itself on ECS Fargate, its load balancer and Valkey) three ways:
 * cfn-lint, the template read as data, and a CloudFormation deployment into moto after
 * infra/fleetbot.yaml, with every parameter named like a fleetbot output taken from that stack.
 *
 * moto 5.2.1 and this template (measured):
 *  - AWS::ElastiCache::ReplicationGroup, AWS::ElastiCache::SubnetGroup, AWS::ElastiCache::ParameterGroup
 *    and AWS::SecretsManager::Secret have no CloudFormation model: moto completes a stack holding them,
 *    lists them without logical id or type and creates nothing. A Ref to one resolves to nothing, so
 *    the template as it is fails CreateStack itself (HTTP 400 MalformedPolicyDocument: the execution
 *    policy's statement on the auth token secret is left without a resource).
 *    The deployment therefore creates those four first, through moto's own Secrets Manager and
 *    ElastiCache APIs and from the template's own properties (the dynamic reference of AuthToken is
 *    resolved as CloudFormation would), and deploys the rest of the template with the references to
 *    them replaced by what those APIs returned. moto has no cache parameter group API either: the
 *    group's settings are asserted on the template, and the replication group gets its name only.
 *    Nor does the replication group get its security group, which the stack creates afterwards.
 *  - AWS::ECS::TaskDefinition keeps only Family, ContainerDefinitions, Volumes and Memory: no
 *    TaskRoleArn, ExecutionRoleArn, Cpu, NetworkMode (moto says bridge) or FARGATE compatibility.
 *    Those are asserted on the template.
 *  - AWS::ECS::Service keeps only Cluster, TaskDefinition and DesiredCount: no LoadBalancers, launch
 *    type (moto says EC2) or network configuration. Which services the target groups route to is
 *    asserted on the template.
 *  - AWS::EC2::SecurityGroup SecurityGroupEgress is ignored (the group keeps EC2's allow-all egress):
 *    egress is asserted on the template, ingress on the deployed groups.
 *  - AWS::ElasticLoadBalancingV2::Listener refuses a CertificateArn ACM does not hold, so the test
 *    requests one from moto's ACM first.
 *  - Mapping names share one namespace with resource names (a mapping and a resource of the same name
 *    break CreateStack with HTTP 500); the template keeps them apart.
 */

const run = promisify(execFile);
const region = 'us-east-1';
const servicePath = fileURLToPath(new URL('../../infra/service.yaml', import.meta.url));
const fleetPath = fileURLToPath(new URL('../../infra/fleetbot.yaml', import.meta.url));
const repoFile = (path: string) => readFile(fileURLToPath(new URL(`../../${path}`, import.meta.url)), 'utf8');

/** Every key of fleetbot's configuration that holds a secret. */
const secretKeys = [
  'TELEGRAM_BOT_TOKEN',
  'TELEGRAM_WEBHOOK_SECRET',
  'SLACK_BOT_TOKEN',
  'SLACK_SIGNING_SECRET',
  'SLACK_APP_TOKEN',
  'DASHBOARD_PASSWORD',
  'REDIS_PASSWORD',
];
const roles = ['bot', 'worker', 'dashboard'] as const;
type Role = (typeof roles)[number];

// ---------------------------------------------------------------------------------------------
// The template as data
// ---------------------------------------------------------------------------------------------

type Json = unknown;
interface Resource {
  Type: string;
  Condition?: string;
  DependsOn?: string | string[];
  Properties: Record<string, Json>;
}
interface ServiceTemplate {
  Parameters: Record<
    string,
    { Default?: Json; AllowedPattern?: string; AllowedValues?: Json[]; NoEcho?: Json }
  >;
  Mappings: Record<string, Record<string, Record<string, Json>>>;
  Conditions: Record<string, Json>;
  Resources: Record<string, Resource>;
  Outputs: Record<string, { Value: Json }>;
}
interface NameValue {
  Name: string;
  Value?: Json;
  ValueFrom?: Json;
}
interface ContainerDefinition {
  Name: string;
  Command: string[];
  Environment: NameValue[];
  Secrets: NameValue[];
  PortMappings?: { ContainerPort: Json }[];
  HealthCheck?: { Command: string[] };
}
interface Rule {
  IpProtocol: string;
  FromPort: Json;
  ToPort: Json;
  CidrIp?: string;
  SourceSecurityGroupId?: Json;
  DestinationSecurityGroupId?: Json;
}

/** CloudFormation's short forms (!Ref, !Sub, ...) as the long forms a JSON template spells out. */
const cfnTags = ((): (ScalarTag | CollectionTag)[] => {
  const functions = [
    ...['Ref', 'Condition', 'Sub', 'GetAtt', 'Base64', 'GetAZs', 'ImportValue'],
    ...['If', 'Not', 'Equals', 'And', 'Or', 'FindInMap', 'Join', 'Select', 'Split'],
  ];
  const key = (name: string) => (name === 'Ref' || name === 'Condition' ? name : `Fn::${name}`);
  // `!GetAtt Resource.Attribute.Part` names the resource before the first dot only.
  const attribute = (value: string) => [
    value.slice(0, value.indexOf('.')),
    value.slice(value.indexOf('.') + 1),
  ];
  return functions.flatMap((name) => [
    {
      tag: `!${name}`,
      resolve: (value: string) => ({ [key(name)]: name === 'GetAtt' ? attribute(value) : value }),
    } satisfies ScalarTag,
    {
      tag: `!${name}`,
      collection: 'seq',
      nodeClass: YAMLSeq,
      resolve: (seq) => ({ [key(name)]: seq.toJSON() }),
    } satisfies CollectionTag,
  ]);
})();

const loadServiceTemplate = async () =>
  parse(await readFile(servicePath, 'utf8'), { customTags: cfnTags }) as ServiceTemplate;

function resourceOf(t: ServiceTemplate, name: string): Resource {
  const r = t.Resources[name];
  if (!r) throw new Error(`no resource ${name}`);
  return r;
}
const ofType = (t: ServiceTemplate, type: string) =>
  Object.entries(t.Resources).filter(([, r]) => r.Type === type);
const props = <T>(t: ServiceTemplate, name: string) => resourceOf(t, name).Properties as T;
const ref = (name: string) => ({ Ref: name });
const getAtt = (name: string, attribute: string) => ({ 'Fn::GetAtt': [name, attribute] });

/** Fn::FindInMap replaced by the value it names, everywhere below `v`. */
function expandMaps(t: ServiceTemplate, v: Json): Json {
  if (Array.isArray(v)) return v.map((x) => expandMaps(t, x));
  if (v === null || typeof v !== 'object') return v;
  const find = (v as Record<string, Json>)['Fn::FindInMap'];
  if (Array.isArray(find)) {
    const [map, top, second] = find as string[];
    return t.Mappings[map as string]?.[top as string]?.[second as string];
  }
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, expandMaps(t, x)]));
}

function containerOf(t: ServiceTemplate, taskDefinition: string): ContainerDefinition {
  const [container] = expandMaps(
    t,
    props<{ ContainerDefinitions: Json }>(t, taskDefinition).ContainerDefinitions,
  ) as ContainerDefinition[];
  if (!container) throw new Error(`no container in ${taskDefinition}`);
  return container;
}

/** Each role's task definition, found through its service (and its container's --role). */
function taskDefinitions(t: ServiceTemplate): Record<Role, string> {
  const found: Partial<Record<Role, string>> = {};
  for (const [, service] of ofType(t, 'AWS::ECS::Service')) {
    const name = (service.Properties.TaskDefinition as { Ref: string }).Ref;
    const { Command } = containerOf(t, name);
    expect(Command.length).toBe(2);
    found[Command[1] as Role] = name;
  }
  expect(Object.keys(found).sort()).toEqual([...roles].sort());
  return found as Record<Role, string>;
}

const statements = (doc: PolicyDocument) => doc.Statement;
const actionsOf = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]) as string[];

// ---------------------------------------------------------------------------------------------
// A network in moto, cfn-lint
// ---------------------------------------------------------------------------------------------

/** A VPC with two private and two public subnets over two zones, a KMS key and an ACM certificate. */
async function network(moto: Moto) {
  const vpc = await moto.ec2.send(new CreateVpcCommand({ CidrBlock: '10.40.0.0/16' }));
  const vpcId = vpc.Vpc?.VpcId ?? '';
  const subnet = async (i: number) =>
    (
      await moto.ec2.send(
        new CreateSubnetCommand({
          VpcId: vpcId,
          CidrBlock: `10.40.${i}.0/24`,
          AvailabilityZone: `${region}${i % 2 ? 'b' : 'a'}`,
        }),
      )
    ).Subnet?.SubnetId ?? '';
  const [fleet, private1, private2, public1, public2] = await Promise.all([0, 1, 2, 3, 4].map(subnet));
  const key = await moto.json('kms', 'TrentService.CreateKey', { Description: 'fleetbot service secrets' });
  const certificate = await moto.json('acm', 'CertificateManager.RequestCertificate', {
    DomainName: 'fleetbot.example.com',
    ValidationMethod: 'DNS',
  });
  return {
    vpcId,
    fleetSubnet: fleet as string,
    privateSubnets: [private1, private2] as string[],
    publicSubnets: [public1, public2] as string[],
    keyArn: String((key.KeyMetadata as { Arn: string }).Arn),
    certificateArn: String(certificate.CertificateArn),
  };
}

/** cfn-lint's verdict: exit code and what it printed. Never rejects. */
const lintTemplate = () =>
  run('cfn-lint', [servicePath]).then(
    ({ stdout }) => ({ code: 0 as number | undefined, stdout }),
    (error: { code?: number; stdout?: string }) => ({ code: error.code, stdout: error.stdout }),
  );
/**
 * Started before the first test and awaited by the last, so its seconds (over 20 on a busy
 * 2-core machine) pass while moto deploys.
 */
let linted: ReturnType<typeof lintTemplate>;
beforeAll(() => {
  linted = lintTemplate();
});

// ---------------------------------------------------------------------------------------------

describe('infra/service.yaml', () => {
  let t: ServiceTemplate;

  beforeAll(async () => {
    t = await loadServiceTemplate();
  });

  describe('secrets', () => {
    it('when fleetbot gains a secret configuration key, then this list names it', () => {
      const looksSecret = configKeys.filter((k) => /(TOKEN|SECRET|PASSWORD|API_KEY)$/.test(k));
      expect(looksSecret.sort()).toEqual([...secretKeys].sort());
    });

    it('when the containers are read, then every secret key arrives only under Secrets with a ValueFrom, and the environment holds no secret', () => {
      const defs = taskDefinitions(t);
      for (const role of roles) {
        const c = containerOf(t, defs[role]);
        const environment = c.Environment.map((e) => e.Name);
        expect(
          environment.filter((name) => secretKeys.includes(name)),
          role,
        ).toEqual([]);
        // Nor a secret by other means: a dynamic reference in a plain value would write the secret's
        // text into the task definition, a reference to a secret's resource or parameter its name.
        expect(JSON.stringify(c.Environment), role).not.toMatch(/resolve:|ValkeyAuthToken|Parameter"/);
        for (const s of c.Secrets) {
          expect(secretKeys, role).toContain(s.Name);
          expect(Object.keys(s).sort(), `${role} ${s.Name}`).toEqual(['Name', 'ValueFrom']);
        }
        // Every name is a key fleetbot reads: nothing it would silently ignore.
        for (const name of [...environment, ...c.Secrets.map((s) => s.Name)])
          expect(configKeys, `${role} ${name}`).toContain(name);
      }
      const secretsOf = (role: Role) =>
        containerOf(t, defs[role])
          .Secrets.map((s) => s.Name)
          .sort();
      // Each role receives the secrets it uses: the worker answers no webhook, the dashboard no chat.
      expect(secretsOf('bot')).toEqual(
        [
          'REDIS_PASSWORD',
          'SLACK_BOT_TOKEN',
          'SLACK_SIGNING_SECRET',
          'TELEGRAM_BOT_TOKEN',
          'TELEGRAM_WEBHOOK_SECRET',
        ].sort(),
      );
      expect(secretsOf('worker')).toEqual(
        ['REDIS_PASSWORD', 'SLACK_BOT_TOKEN', 'SLACK_SIGNING_SECRET', 'TELEGRAM_BOT_TOKEN'].sort(),
      );
      expect(secretsOf('dashboard')).toEqual(['DASHBOARD_PASSWORD', 'REDIS_PASSWORD']);
    });

    it('when the parameters are read, then none holds secret text: the secrets are named by parameter name, never passed in', () => {
      const named = Object.entries(t.Parameters).filter(([name]) =>
        /(Token|Secret|Password)(Parameter)?$/.test(name),
      );
      expect(named.map(([name]) => name).sort()).toEqual(
        [
          'DashboardPasswordParameter',
          'SlackBotTokenParameter',
          'SlackSigningSecretParameter',
          'TelegramBotTokenParameter',
          'TelegramWebhookSecretParameter',
        ].sort(),
      );
      for (const [name, p] of named) {
        expect(p.AllowedPattern, name).toMatch(/^\^\//);
        expect(String(p.Default), name).toMatch(/^\/fleetbot\/service\//);
        // Members' secrets have their own rules in the fleet's policies; fleetbot's own stay apart.
        expect(new RegExp(p.AllowedPattern as string).test('/fleetbot/users/1/openai-api-key'), name).toBe(
          false,
        );
      }
      expect(t.Parameters.ServiceSecretsKeyArn?.AllowedPattern).toMatch(/^\^arn:aws.*:kms:/);
      expect(Object.values(t.Parameters).filter((p) => p.NoEcho !== undefined)).toEqual([]);
    });

    it('when the execution role is read, then it may read exactly the secrets the containers receive, and decrypt only through SSM and Secrets Manager', () => {
      const defs = taskDefinitions(t);
      const valueFroms = roles.flatMap((role) => containerOf(t, defs[role]).Secrets.map((s) => s.ValueFrom));
      const unique = (values: Json[]) => [...new Set(values.map((v) => JSON.stringify(v)))].sort();
      const policy = props<{ PolicyDocument: PolicyDocument; Roles: Json[] }>(t, 'TaskExecutionPolicy');
      expect(policy.Roles).toEqual([ref('TaskExecutionRole')]);
      const reads = statements(policy.PolicyDocument).filter((s) =>
        actionsOf(s).some((a) => /^(ssm|secretsmanager):/.test(a)),
      );
      expect(reads.map((s) => actionsOf(s))).toEqual([
        ['ssm:GetParameters'],
        ['secretsmanager:GetSecretValue'],
      ]);
      expect(unique(reads.flatMap((s) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource])))).toEqual(
        unique(valueFroms),
      );
      const decrypt = statements(policy.PolicyDocument).filter((s) =>
        actionsOf(s).some((a) => a.startsWith('kms:')),
      );
      expect(decrypt).toEqual([
        expect.objectContaining({
          Action: 'kms:Decrypt',
          Resource: ref('ServiceSecretsKeyArn'),
          Condition: {
            StringEquals: {
              'kms:ViaService': [
                { 'Fn::Sub': 'ssm.${AWS::Region}.amazonaws.com' },
                { 'Fn::Sub': 'secretsmanager.${AWS::Region}.amazonaws.com' },
              ],
            },
          },
        }),
      ]);
      expect(
        statements(policy.PolicyDocument).every(
          (s) => s.Effect === 'Allow' && !actionsOf(s).some((a) => a.includes('*')),
        ),
      ).toBe(true);
      // The auth token secret is encrypted with the same key the role may use.
      expect(props<{ KmsKeyId: Json }>(t, 'ValkeyAuthToken').KmsKeyId).toEqual(ref('ServiceSecretsKeyArn'));
    });
  });

  describe('tasks', () => {
    it("when the task definitions are read, then the bot and dashboard run as the fleetbot stack's bot role, the worker as its worker role, and each pulls with the separate execution role", () => {
      for (const [name, r] of ofType(t, 'AWS::ECS::TaskDefinition')) {
        expect(r.Properties, name).toMatchObject({
          ExecutionRoleArn: getAtt('TaskExecutionRole', 'Arn'),
          RequiresCompatibilities: ['FARGATE'],
          NetworkMode: 'awsvpc',
        });
      }
      // Only the worker's role may read the rollout events queue (test/infra/rollout-events.test.ts).
      const defs = taskDefinitions(t);
      const taskRoles = { bot: 'BotRoleArn', worker: 'WorkerRoleArn', dashboard: 'BotRoleArn' };
      for (const role of roles)
        expect(resourceOf(t, defs[role]).Properties.TaskRoleArn, role).toEqual(ref(taskRoles[role]));
      expect(t.Parameters.BotRoleArn?.AllowedPattern).toMatch(/:iam::/);
      expect(t.Parameters.WorkerRoleArn?.AllowedPattern).toMatch(/:iam::/);
      const trust = props<{ AssumeRolePolicyDocument: PolicyDocument }>(
        t,
        'TaskExecutionRole',
      ).AssumeRolePolicyDocument;
      expect(trust.Statement).toEqual([
        {
          Effect: 'Allow',
          Principal: { Service: 'ecs-tasks.amazonaws.com' },
          Action: 'sts:AssumeRole',
          Condition: { StringEquals: { 'aws:SourceAccount': ref('AWS::AccountId') } },
        },
      ]);
    });

    it("when a container starts, then the image's entrypoint gets only --role and ECS runs the image's own health check", async () => {
      const dockerfile = await repoFile('Dockerfile');
      const check = dockerfile.match(/^HEALTHCHECK .* CMD (\[.*\])$/m)?.[1];
      expect(check).toBeDefined();
      const defs = taskDefinitions(t);
      for (const role of roles) {
        const c = containerOf(t, defs[role]);
        expect(c.Command).toEqual(['--role', role]);
        expect(c.HealthCheck?.Command).toEqual(['CMD', ...(JSON.parse(check as string) as string[])]);
      }
    });

    it('when the services are read, then they run on Fargate in the private subnets without public addresses, with the desired counts as parameters', () => {
      const counts: Record<string, Json> = {};
      for (const [name, s] of ofType(t, 'AWS::ECS::Service')) {
        expect(s.Properties, name).toMatchObject({
          LaunchType: 'FARGATE',
          NetworkConfiguration: {
            AwsvpcConfiguration: {
              AssignPublicIp: 'DISABLED',
              Subnets: ref('PrivateSubnetIds'),
              SecurityGroups: [getAtt('TaskSecurityGroup', 'GroupId')],
            },
          },
          DeploymentConfiguration: { DeploymentCircuitBreaker: { Enable: true, Rollback: true } },
        });
        counts[String(s.Properties.ServiceName)] = s.Properties.DesiredCount;
      }
      expect(counts).toEqual({
        bot: ref('BotDesiredCount'),
        worker: ref('WorkerDesiredCount'),
        dashboard: ref('DashboardDesiredCount'),
      });
      expect(
        Object.fromEntries(
          ['BotDesiredCount', 'WorkerDesiredCount', 'DashboardDesiredCount'].map((p) => [
            p,
            t.Parameters[p]?.Default,
          ]),
        ),
      ).toEqual({ BotDesiredCount: 2, WorkerDesiredCount: 3, DashboardDesiredCount: 1 });
      expect(props<{ Subnets: Json; Scheme: string }>(t, 'LoadBalancer')).toMatchObject({
        Subnets: ref('PublicSubnetIds'),
        Scheme: 'internet-facing',
      });
    });

    it('when the logs are read, then each role has its own group with the retention parameter, through the awslogs driver', () => {
      const defs = taskDefinitions(t);
      const groups = { bot: 'BotLogGroup', worker: 'WorkerLogGroup', dashboard: 'DashboardLogGroup' };
      for (const role of roles) {
        const [c] = props<{ ContainerDefinitions: { LogConfiguration: Json }[] }>(
          t,
          defs[role],
        ).ContainerDefinitions;
        expect(c?.LogConfiguration).toEqual({
          LogDriver: 'awslogs',
          Options: {
            'awslogs-group': ref(groups[role]),
            'awslogs-region': ref('AWS::Region'),
            'awslogs-stream-prefix': role,
          },
        });
        expect(props(t, groups[role])).toMatchObject({ RetentionInDays: ref('LogRetentionDays') });
      }
    });
  });

  describe('load balancer', () => {
    it('when every listener and rule is followed to its target group and on to the services registered there, then only the bot and the dashboard are reached, the worker never', async () => {
      const listeners = ofType(t, 'AWS::ElasticLoadBalancingV2::Listener');
      const rules = ofType(t, 'AWS::ElasticLoadBalancingV2::ListenerRule');
      const actions = [
        ...listeners.flatMap(([, l]) => listOf<Record<string, Json>>(l.Properties.DefaultActions)),
        ...rules.flatMap(([, r]) => listOf<Record<string, Json>>(r.Properties.Actions)),
      ];
      const routed = [
        ...new Set(
          actions.filter((a) => a.Type === 'forward').map((a) => (a.TargetGroupArn as { Ref: string }).Ref),
        ),
      ].sort();
      expect(routed).toEqual(
        ofType(t, 'AWS::ElasticLoadBalancingV2::TargetGroup')
          .map(([n]) => n)
          .sort(),
      );

      const defs = taskDefinitions(t);
      const roleOf = Object.fromEntries(roles.map((role) => [defs[role], role]));
      const reached: Record<string, string[]> = {};
      for (const [, service] of ofType(t, 'AWS::ECS::Service')) {
        const role = roleOf[(service.Properties.TaskDefinition as { Ref: string }).Ref] as Role;
        const entries = expandMaps(t, listOf(service.Properties.LoadBalancers)) as {
          ContainerName: string;
          ContainerPort: number;
          TargetGroupArn: { Ref: string };
        }[];
        for (const e of entries) {
          const group = expandMaps(t, props(t, e.TargetGroupArn.Ref)) as { Port: number; TargetType: string };
          expect(e.ContainerName).toBe(role);
          expect(group.Port).toBe(e.ContainerPort);
          expect(group.TargetType).toBe('ip');
          expect((containerOf(t, defs[role]).PortMappings ?? []).map((p) => p.ContainerPort)).toContain(
            e.ContainerPort,
          );
          reached[e.TargetGroupArn.Ref] = [
            ...(reached[e.TargetGroupArn.Ref] ?? []),
            `${role}:${e.ContainerPort}`,
          ];
        }
      }
      expect(reached).toEqual({
        SlackTargetGroup: ['bot:3000'],
        TelegramTargetGroup: ['bot:8443'],
        DashboardTargetGroup: ['dashboard:8080'],
      });
      expect(containerOf(t, defs.worker).PortMappings).toBeUndefined();
    });

    it("when a path is routed, then it is the receivers' own path, and each health check asks a path that answers", async () => {
      const [slackSource, serverSource] = await Promise.all([
        repoFile('src/bot/slack.ts'),
        repoFile('src/http/server.ts'),
      ]);
      const pathOf = (rule: string) =>
        (
          expandMaps(t, props(t, rule)) as {
            Conditions: { Field: string; PathPatternConfig: { Values: string[] } }[];
          }
        ).Conditions;
      expect(pathOf('SlackRule')).toEqual([
        { Field: 'path-pattern', PathPatternConfig: { Values: ['/slack/events'] } },
      ]);
      expect(slackSource).toContain("endpoints: '/slack/events'");
      expect(pathOf('TelegramRule')).toEqual([
        { Field: 'path-pattern', PathPatternConfig: { Values: ['/telegram/webhook'] } },
      ]);
      // The webhook server answers only TELEGRAM_WEBHOOK_URL's path (src/bot/telegram.ts).
      const bot = containerOf(t, taskDefinitions(t).bot);
      expect(bot.Environment.find((e) => e.Name === 'TELEGRAM_WEBHOOK_URL')?.Value).toEqual({
        'Fn::Sub': ['https://${DomainName}${Path}', { Path: '/telegram/webhook' }],
      });

      const health = (group: string) =>
        expandMaps(t, props(t, group)) as { HealthCheckPath: string; Matcher: { HttpCode: string } };
      // POST-only receivers: a GET on their path is fleetbot's own 404.
      expect(health('SlackTargetGroup')).toMatchObject({
        HealthCheckPath: '/slack/events',
        Matcher: { HttpCode: '404' },
      });
      expect(health('TelegramTargetGroup')).toMatchObject({
        HealthCheckPath: '/telegram/webhook',
        Matcher: { HttpCode: '404' },
      });
      expect(health('DashboardTargetGroup')).toMatchObject({
        HealthCheckPath: '/healthz',
        Matcher: { HttpCode: '200' },
      });
      expect(serverSource).toContain("app.get('/healthz'");

      expect(props(t, 'HttpListener')).toMatchObject({
        Protocol: 'HTTP',
        Port: 80,
        DefaultActions: [
          { Type: 'redirect', RedirectConfig: { Protocol: 'HTTPS', Port: '443', StatusCode: 'HTTP_301' } },
        ],
      });
      expect(props(t, 'HttpsListener')).toMatchObject({
        Protocol: 'HTTPS',
        Port: 443,
        Certificates: [{ CertificateArn: ref('CertificateArn') }],
        DefaultActions: [{ Type: 'forward', TargetGroupArn: ref('DashboardTargetGroup') }],
      });
    });

    it("when the receivers' health checks ask the real Slack receiver and Telegram webhook server, then a GET on each path gets fleetbot's 404 while the path takes POSTs", async () => {
      const check = (group: string) =>
        expandMaps(t, props(t, group)) as { HealthCheckPath: string; Matcher: { HttpCode: string } };
      const slackPeer = await startFakeSlack();
      const telegramPeer = await startFakeTelegram();
      const token = `7000000003:${'H'.repeat(35)}`;
      telegramPeer.addBot(token, { username: 'service_stack_bot' });
      const { log } = capturedLogger();
      const slack = createSlackAdapter({
        botToken: 'xoxb-service-stack-health',
        signingSecret: 'service-stack-signing-secret',
        apiUrl: slackPeer.apiUrl,
        host: '127.0.0.1',
        port: 0,
        roleOf: async () => 'guest',
        dispatch: async () => 'ran',
        log,
      });
      const webhookPort = await freePort();
      const telegram = createTelegramAdapter({
        token,
        apiRoot: telegramPeer.apiRoot,
        mode: 'webhook',
        webhook: {
          url: `http://127.0.0.1:${webhookPort}${check('TelegramTargetGroup').HealthCheckPath}`,
          secret: 'service-stack-webhook-secret',
          host: '127.0.0.1',
          port: webhookPort,
        },
        roleOf: async () => 'guest',
        dispatch: async () => 'ran',
        log,
      });
      try {
        await Promise.all([slack.start(), telegram.start()]);
        const ask = async (port: number | undefined, group: string, method: 'GET' | 'POST') =>
          (
            await fetch(`http://127.0.0.1:${port}${check(group).HealthCheckPath}`, {
              method,
              ...(method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {}),
            })
          ).status;
        const answers = {
          slack: [
            await ask(slack.port(), 'SlackTargetGroup', 'GET'),
            await ask(slack.port(), 'SlackTargetGroup', 'POST'),
          ],
          telegram: [
            await ask(webhookPort, 'TelegramTargetGroup', 'GET'),
            await ask(webhookPort, 'TelegramTargetGroup', 'POST'),
          ],
        };
        const matcher = (group: string) => Number(check(group).Matcher.HttpCode);
        // An unsigned Slack request and a webhook call without Telegram's secret header are refused.
        expect(answers).toEqual({
          slack: [matcher('SlackTargetGroup'), 401],
          telegram: [matcher('TelegramTargetGroup'), 401],
        });
      } finally {
        await Promise.allSettled([slack.stop(), telegram.stop()]);
        await Promise.allSettled([slackPeer.close(), telegramPeer.close()]);
      }
    });

    it('when the security groups are read, then the load balancer reaches the tasks only on their three container ports and nothing else reaches them', () => {
      const ports = (rules: Rule[]) => rules.map((r) => [r.IpProtocol, r.FromPort, r.ToPort]);
      const lb = expandMaps(t, props(t, 'LoadBalancerSecurityGroup')) as {
        SecurityGroupIngress: Rule[];
        SecurityGroupEgress: Rule[];
      };
      expect(lb.SecurityGroupIngress.map((r) => [r.FromPort, r.CidrIp])).toEqual([
        [443, '0.0.0.0/0'],
        [80, '0.0.0.0/0'],
      ]);
      expect(ports(lb.SecurityGroupEgress)).toEqual([
        ['tcp', 3000, 3000],
        ['tcp', 8443, 8443],
        ['tcp', 8080, 8080],
      ]);
      const taskGroup = getAtt('TaskSecurityGroup', 'GroupId');
      expect(
        lb.SecurityGroupEgress.every(
          (r) => JSON.stringify(r.DestinationSecurityGroupId) === JSON.stringify(taskGroup),
        ),
      ).toBe(true);

      const tasks = expandMaps(t, props(t, 'TaskSecurityGroup')) as {
        SecurityGroupIngress?: Rule[];
        SecurityGroupEgress: Rule[];
      };
      expect(tasks.SecurityGroupIngress).toBeUndefined();
      const ingress = ofType(t, 'AWS::EC2::SecurityGroupIngress').map(
        ([, r]) => expandMaps(t, r.Properties) as Rule & { GroupId: Json },
      );
      const intoTasks = ingress.filter((r) => JSON.stringify(r.GroupId) === JSON.stringify(taskGroup));
      expect(ports(intoTasks).sort()).toEqual(ports(lb.SecurityGroupEgress).sort());
      expect(
        intoTasks.every(
          (r) =>
            JSON.stringify(r.SourceSecurityGroupId) ===
            JSON.stringify(getAtt('LoadBalancerSecurityGroup', 'GroupId')),
        ),
      ).toBe(true);
      expect(
        tasks.SecurityGroupEgress.map((r) => [r.FromPort, r.CidrIp ?? r.DestinationSecurityGroupId]),
      ).toEqual([
        [443, '0.0.0.0/0'],
        [6379, getAtt('ValkeySecurityGroup', 'GroupId')],
      ]);
    });
  });

  describe('Valkey', () => {
    it('when the replication group is read, then it is Valkey 8 in cluster mode with TLS required, encryption at rest and the generated auth token', () => {
      const rg = expandMaps(t, props(t, 'ValkeyReplicationGroup')) as Record<string, Json>;
      expect(rg).toMatchObject({
        Engine: 'valkey',
        EngineVersion: ref('ValkeyEngineVersion'),
        ClusterMode: 'enabled',
        NumNodeGroups: ref('ValkeyNumNodeGroups'),
        ReplicasPerNodeGroup: ref('ValkeyReplicasPerNodeGroup'),
        AutomaticFailoverEnabled: true,
        TransitEncryptionEnabled: true,
        TransitEncryptionMode: 'required',
        AtRestEncryptionEnabled: true,
        AuthToken: { 'Fn::Sub': '{{resolve:secretsmanager:${ValkeyAuthToken}:SecretString}}' },
        CacheParameterGroupName: ref('ValkeyParameterGroup'),
        CacheSubnetGroupName: ref('ValkeySubnetGroup'),
        SecurityGroupIds: [getAtt('ValkeySecurityGroup', 'GroupId')],
      });
      expect(t.Parameters.ValkeyEngineVersion?.AllowedValues?.every((v) => /^8\.\d+$/.test(String(v)))).toBe(
        true,
      );
      // Cluster mode needs cluster-enabled; BullMQ needs a Redis that never evicts its keys.
      expect(props(t, 'ValkeyParameterGroup')).toMatchObject({
        CacheParameterGroupFamily: 'valkey8',
        Properties: { 'cluster-enabled': 'yes', 'maxmemory-policy': 'noeviction' },
      });
      // A plain string of letters and digits: ElastiCache allows only ! & # $ ^ < > - besides them.
      const generate = props<{ GenerateSecretString: Record<string, Json> }>(
        t,
        'ValkeyAuthToken',
      ).GenerateSecretString;
      expect(generate).toEqual({ PasswordLength: 64, ExcludePunctuation: true });
      expect(props(t, 'ValkeySubnetGroup')).toMatchObject({ SubnetIds: ref('PrivateSubnetIds') });
    });

    it('when the Valkey security group is read, then only the tasks group may connect, on the Valkey port', () => {
      const group = getAtt('ValkeySecurityGroup', 'GroupId');
      const valkey = props<{ SecurityGroupIngress?: Json; SecurityGroupEgress: Rule[] }>(
        t,
        'ValkeySecurityGroup',
      );
      expect(valkey.SecurityGroupIngress).toBeUndefined();
      expect(valkey.SecurityGroupEgress.map((r) => r.CidrIp)).toEqual(['127.0.0.1/32']);
      const into = ofType(t, 'AWS::EC2::SecurityGroupIngress')
        .map(([, r]) => expandMaps(t, r.Properties) as Rule & { GroupId: Json })
        .filter((r) => JSON.stringify(r.GroupId) === JSON.stringify(group));
      expect(into.map((r) => [r.IpProtocol, r.FromPort, r.ToPort, r.SourceSecurityGroupId])).toEqual([
        ['tcp', 6379, 6379, getAtt('TaskSecurityGroup', 'GroupId')],
      ]);
    });

    it('when a container connects, then it uses the configuration endpoint over TLS as a cluster, with the token as REDIS_PASSWORD', () => {
      const defs = taskDefinitions(t);
      for (const role of roles) {
        const c = containerOf(t, defs[role]);
        const env = Object.fromEntries(c.Environment.map((e) => [e.Name, e.Value]));
        expect(env.REDIS_URL, role).toEqual({
          'Fn::Sub':
            'rediss://${ValkeyReplicationGroup.ConfigurationEndPoint.Address}:${ValkeyReplicationGroup.ConfigurationEndPoint.Port}',
        });
        expect(env.REDIS_CLUSTER, role).toBe('true');
        expect(c.Secrets.find((s) => s.Name === 'REDIS_PASSWORD')?.ValueFrom, role).toEqual(
          ref('ValkeyAuthToken'),
        );
      }
    });
  });
});

// ---------------------------------------------------------------------------------------------
// Deployed into moto
// ---------------------------------------------------------------------------------------------

/** Types moto's CloudFormation lacks (see the top of this file); the probe below shows it. */
const motoLacks = [
  'AWS::ElastiCache::ParameterGroup',
  'AWS::ElastiCache::ReplicationGroup',
  'AWS::ElastiCache::SubnetGroup',
  'AWS::SecretsManager::Secret',
];

/** What fleetbot's own SecureString parameters hold in the test; shaped as fleetbot checks them. */
const ownSecrets = {
  TelegramBotTokenParameter: `7000000001:${'T'.repeat(35)}`,
  TelegramWebhookSecretParameter: 'webhook-secret-0123456789',
  SlackBotTokenParameter: 'xoxb-0000-service-stack-test',
  SlackSigningSecretParameter: 'signing-secret-service-stack',
  DashboardPasswordParameter: 'dashboard-password-0123456789',
};

const missing = Symbol('missing');

/** Resolves the intrinsics the Valkey resources use: Ref, Fn::Sub, Fn::FindInMap, Fn::If, Fn::Not, Fn::Equals. */
function resolveFor(
  t: ServiceTemplate,
  parameters: Record<string, string>,
  known: Record<string, string>,
): (v: Json) => Json {
  const lookup = (name: string): string | typeof missing => {
    const pseudo: Record<string, string> = { 'AWS::Region': region, 'AWS::Partition': 'aws' };
    return (
      pseudo[name] ??
      parameters[name] ??
      known[name] ??
      (t.Parameters[name]?.Default as string | undefined) ??
      missing
    );
  };
  const condition = (expr: Json): boolean => {
    const [fn, arg] = Object.entries(expr as Record<string, Json>)[0] ?? [];
    const args = arg as Json[];
    if (fn === 'Fn::Not') return !condition(args[0]);
    if (fn === 'Fn::Equals') return String(resolve(args[0])) === String(resolve(args[1]));
    throw new Error(`unsupported condition ${fn}`);
  };
  const resolve = (v: Json): Json => {
    if (Array.isArray(v)) return v.map(resolve).filter((x) => x !== missing);
    if (v === null || typeof v !== 'object') return v;
    const entries = Object.entries(v as Record<string, Json>);
    const [fn, arg] = entries[0] ?? [];
    if (entries.length === 1 && fn === 'Ref') return lookup(arg as string);
    if (entries.length === 1 && fn === 'Fn::GetAtt') return known[(arg as string[]).join('.')] ?? missing;
    if (entries.length === 1 && fn === 'Fn::FindInMap') return resolve(expandMaps(t, v));
    if (entries.length === 1 && fn === 'Fn::If') {
      const [name, then, otherwise] = arg as [string, Json, Json];
      return resolve(condition(t.Conditions[name]) ? then : otherwise);
    }
    if (entries.length === 1 && fn === 'Fn::Sub') {
      const [text, vars] = typeof arg === 'string' ? [arg, {}] : (arg as [string, Record<string, Json>]);
      return text.replace(/\$\{([^}!]+)\}/g, (_, name: string) => {
        const value = name in vars ? resolve(vars[name]) : name.includes('.') ? known[name] : lookup(name);
        if (value === missing || value === undefined) throw new Error(`cannot resolve \${${name}}`);
        return String(value);
      });
    }
    return Object.fromEntries(entries.map(([k, x]) => [k, resolve(x)]).filter(([, x]) => x !== missing));
  };
  return resolve;
}

/** References to the given resources (Ref, Fn::GetAtt, Fn::Sub) replaced by their values. */
function substitute(v: Json, values: Record<string, string>): Json {
  if (Array.isArray(v)) return v.map((x) => substitute(x, values));
  if (v === null || typeof v !== 'object') return v;
  const entries = Object.entries(v as Record<string, Json>);
  const [fn, arg] = entries[0] ?? [];
  if (entries.length === 1 && fn === 'Ref' && (arg as string) in values) return values[arg as string];
  if (entries.length === 1 && fn === 'Fn::GetAtt' && (arg as string[]).join('.') in values)
    return values[(arg as string[]).join('.')];
  if (entries.length === 1 && fn === 'Fn::Sub') {
    const replace = (text: string) =>
      text.replace(/\$\{([^}!]+)\}/g, (all, name: string) => values[name] ?? all);
    return {
      'Fn::Sub':
        typeof arg === 'string'
          ? replace(arg)
          : [replace((arg as [string, Json])[0]), substitute((arg as [string, Json])[1], values)],
    };
  }
  return Object.fromEntries(entries.map(([k, x]) => [k, substitute(x, values)]));
}

describe('infra/service.yaml deployed into moto after infra/fleetbot.yaml', () => {
  let t: ServiceTemplate;
  let gaps: Moto;
  let moto: Moto;
  let net: Awaited<ReturnType<typeof network>>;
  let fleet: Stack;
  let service: Stack;
  let prefix: string;
  const standIns: Record<string, string> = {};
  let authToken = '';
  let serviceParameters: Record<string, string> = {};
  let fromFleetOutputs: string[] = [];

  beforeAll(async () => {
    t = await loadServiceTemplate();
    gaps = motoAccount(testAccountId());
    moto = motoAccount(testAccountId());
    prefix = `svc${moto.accountId.slice(-6)}`;
    net = await network(moto);

    // fleetbot's own secrets come first (infra/README.md): SecureString parameters under the service key.
    for (const [parameter, value] of Object.entries(ownSecrets))
      await moto.ssm.send(
        new PutParameterCommand({
          Name: String(t.Parameters[parameter]?.Default),
          Value: value,
          Type: 'SecureString',
          KeyId: net.keyArn,
        }),
      );

    fleet = await createStack(moto, `fleetbot-${prefix}`, await readFile(fleetPath, 'utf8'), {
      Prefix: prefix,
      Env: 'test',
      VpcId: net.vpcId,
      SubnetId: net.fleetSubnet,
      AmiId: 'ami-12c6146b',
    });

    // As `aws cloudformation deploy` does with the fleet stack's outputs: those the template declares.
    fromFleetOutputs = Object.keys(fleet.outputs).filter((k) => k in t.Parameters);
    serviceParameters = {
      ...Object.fromEntries(fromFleetOutputs.map((k) => [k, fleet.outputs[k] as string])),
      Prefix: prefix,
      Env: 'test',
      InstanceSubnetId: net.fleetSubnet,
      Image: `${moto.accountId}.dkr.ecr.${region}.amazonaws.com/fleetbot:1.2.3`,
      VpcId: net.vpcId,
      PrivateSubnetIds: net.privateSubnets.join(','),
      PublicSubnetIds: net.publicSubnets.join(','),
      DomainName: 'fleetbot.example.com',
      CertificateArn: net.certificateArn,
      ServiceSecretsKeyArn: net.keyArn,
      SlackAdminUserIds: 'U0ADMIN1',
    };

    // The four resources moto's CloudFormation lacks, through moto's own APIs, from the template.
    const stackName = `fleetbot-service-${prefix}`;
    const resolve = resolveFor(t, serviceParameters, standIns);
    const generate = props<{ GenerateSecretString: object }>(t, 'ValkeyAuthToken').GenerateSecretString;
    const { RandomPassword } = await moto.json(
      'secretsmanager',
      'secretsmanager.GetRandomPassword',
      generate,
    );
    const secret = resolve(props(t, 'ValkeyAuthToken')) as { Description: string; KmsKeyId: string };
    const created = await moto.json('secretsmanager', 'secretsmanager.CreateSecret', {
      Name: `${stackName}-ValkeyAuthToken`,
      Description: secret.Description,
      KmsKeyId: secret.KmsKeyId,
      SecretString: RandomPassword,
    });
    standIns.ValkeyAuthToken = String(created.ARN);

    const subnetGroup = resolve(props(t, 'ValkeySubnetGroup')) as { Description: string; SubnetIds: string };
    standIns.ValkeySubnetGroup = `${stackName}-valkey`.toLowerCase();
    await moto.query('elasticache', 'CreateCacheSubnetGroup', {
      CacheSubnetGroupName: standIns.ValkeySubnetGroup,
      CacheSubnetGroupDescription: subnetGroup.Description,
      ...Object.fromEntries(
        subnetGroup.SubnetIds.split(',').map((id, i) => [`SubnetIds.SubnetIdentifier.${i + 1}`, id]),
      ),
    });
    // No parameter group API in moto: the name stands in, its settings are asserted on the template.
    standIns.ValkeyParameterGroup = `${stackName}-valkey8-cluster`.toLowerCase();

    const group = resolve(props(t, 'ValkeyReplicationGroup')) as Record<string, Json>;
    // CloudFormation resolves the dynamic reference before ElastiCache sees it.
    const reference = String(group.AuthToken).match(
      /^\{\{resolve:secretsmanager:(.+):SecretString\}\}$/,
    )?.[1];
    const value = await moto.json('secretsmanager', 'secretsmanager.GetSecretValue', { SecretId: reference });
    authToken = String(value.SecretString);
    const request: Record<string, string> = { ReplicationGroupId: `${prefix}-valkey` };
    for (const [key, v] of Object.entries({ ...group, AuthToken: authToken })) {
      if (key === 'Tags')
        listOf<{ Key: string; Value: string }>(v).forEach((tag, i) => {
          request[`Tags.Tag.${i + 1}.Key`] = tag.Key;
          request[`Tags.Tag.${i + 1}.Value`] = tag.Value;
        });
      else if (key === 'SecurityGroupIds')
        // Its only entry is the stack's own group, which does not exist yet (see the top of this file).
        expect(v).toEqual([]);
      else request[key] = String(v);
    }
    const replication = (await moto.query('elasticache', 'CreateReplicationGroup', request))
      .ReplicationGroup as {
      ConfigurationEndpoint: { Address: string; Port: string };
    };
    standIns.ValkeyReplicationGroup = `${prefix}-valkey`;
    standIns['ValkeyReplicationGroup.ConfigurationEndPoint.Address'] =
      replication.ConfigurationEndpoint.Address;
    standIns['ValkeyReplicationGroup.ConfigurationEndPoint.Port'] = replication.ConfigurationEndpoint.Port;

    const deployable = substitute(
      {
        ...t,
        Resources: Object.fromEntries(
          Object.entries(t.Resources).filter(([, r]) => !motoLacks.includes(r.Type)),
        ),
      },
      standIns,
    );
    service = await createStack(moto, stackName, JSON.stringify(deployable), serviceParameters);
  }, 120_000);

  afterAll(() => {
    gaps?.destroy();
    moto?.destroy();
  });

  it('when the four types moto lacks are deployed alone, then moto completes the stack but creates none of them (it lists them without id or type)', async () => {
    const probe = {
      Resources: {
        Secret: {
          Type: 'AWS::SecretsManager::Secret',
          Properties: { GenerateSecretString: { PasswordLength: 64 } },
        },
        SubnetGroup: {
          Type: 'AWS::ElastiCache::SubnetGroup',
          Properties: { Description: 'probe', SubnetIds: ['subnet-1'] },
        },
        ParameterGroup: {
          Type: 'AWS::ElastiCache::ParameterGroup',
          Properties: { CacheParameterGroupFamily: 'valkey8', Description: 'probe' },
        },
        ReplicationGroup: {
          Type: 'AWS::ElastiCache::ReplicationGroup',
          Properties: { ReplicationGroupDescription: 'probe', Engine: 'valkey', ClusterMode: 'enabled' },
        },
      },
    };
    expect(
      Object.values(probe.Resources)
        .map((r) => r.Type)
        .sort(),
    ).toEqual(motoLacks);
    const stack = await createStack(gaps, 'probe', JSON.stringify(probe), {});
    expect(stack.status).toBe('CREATE_COMPLETE');
    expect(stack.resources.map((r) => [r.LogicalResourceId, r.ResourceType])).toEqual([
      ['', ''],
      ['', ''],
      ['', ''],
      ['', ''],
    ]);
    expect((await gaps.json('secretsmanager', 'secretsmanager.ListSecrets', {})).SecretList).toEqual([]);
    expect((await gaps.query('elasticache', 'DescribeReplicationGroups')).ReplicationGroups).toBe('');
    expect((await gaps.query('elasticache', 'DescribeCacheSubnetGroups')).CacheSubnetGroups).toBe('');
  });

  it('when the template is deployed as it is, then moto refuses CreateStack: the Ref to the auth token secret it did not create leaves a policy statement without resource', async () => {
    // Its own account, with its own network: a refused CreateStack leaves what moto created before.
    const own = await network(gaps);
    const { status, text } = await gaps.send(
      'cloudformation',
      'CreateStack',
      createStackParams('as-is', await readFile(servicePath, 'utf8'), {
        ...serviceParameters,
        VpcId: own.vpcId,
        InstanceSubnetId: own.fleetSubnet,
        PrivateSubnetIds: own.privateSubnets.join(','),
        PublicSubnetIds: own.publicSubnets.join(','),
        CertificateArn: own.certificateArn,
        ServiceSecretsKeyArn: own.keyArn,
      }),
    );
    expect(status).toBe(400);
    expect(text).toContain('MalformedPolicyDocument');
    expect(text).toContain('Policy statement must contain resources');
  });

  it('when the service stack is created with the fleet stack outputs, then every resource moto supports is created and the outputs name the load balancer, the receivers and Valkey', async () => {
    expect(fleet.status).toBe('CREATE_COMPLETE');
    // Every parameter named like a fleet output got its value from the fleet stack.
    expect(fromFleetOutputs.sort()).toEqual(
      [
        'BootstrapCheckDocumentName',
        'BotRoleArn',
        'DeployDocumentName',
        'InstanceProfileName',
        'KmsKeyAlias',
        'LaunchTemplateName',
        'RestartDocumentName',
        'RolloutEventsQueueUrl',
        'SecretBinderFunctionName',
        'SecurityGroupId',
        'WorkerRoleArn',
      ].sort(),
    );
    expect(service.status).toBe('CREATE_COMPLETE');
    const supported = Object.entries(t.Resources).filter(([, r]) => !motoLacks.includes(r.Type));
    expect(service.resources.map((r) => [r.LogicalResourceId, r.ResourceType]).sort()).toEqual(
      supported.map(([name, r]) => [name, r.Type]).sort(),
    );
    expect(service.resources.every((r) => r.ResourceStatus === 'CREATE_COMPLETE')).toBe(true);

    const balancers = listOf<{ DNSName: string; Scheme: string }>(
      (await moto.query('elasticloadbalancing', 'DescribeLoadBalancers')).LoadBalancers,
    );
    expect(balancers.map((b) => b.Scheme)).toEqual(['internet-facing']);
    expect(service.outputs).toEqual({
      LoadBalancerDnsName: balancers[0]?.DNSName,
      SlackRequestUrl: 'https://fleetbot.example.com/slack/events',
      TelegramWebhookUrl: 'https://fleetbot.example.com/telegram/webhook',
      DashboardUrl: 'https://fleetbot.example.com/',
      ValkeyConfigurationEndpoint: `${standIns['ValkeyReplicationGroup.ConfigurationEndPoint.Address']}:6379`,
      ValkeyAuthTokenSecretArn: standIns.ValkeyAuthToken,
      ClusterName: `${prefix}-test`,
      TaskSecurityGroupId: expect.stringMatching(/^sg-/),
    });
  });

  it("when moto's ElastiCache holds the replication group built from the template, then it is a cluster-mode group with TLS required and the auth token CloudFormation would resolve", async () => {
    expect(authToken).toMatch(/^[A-Za-z0-9]{64}$/);
    const described = await moto.query('elasticache', 'DescribeReplicationGroups', {
      ReplicationGroupId: standIns.ValkeyReplicationGroup ?? '',
    });
    expect(listOf(described.ReplicationGroups)[0]).toMatchObject({
      Engine: 'valkey',
      ClusterMode: 'enabled',
      ClusterEnabled: 'true',
      TransitEncryptionEnabled: 'true',
      AtRestEncryptionEnabled: 'true',
      AuthTokenEnabled: 'true',
      AutomaticFailover: 'enabled',
      MultiAZ: 'enabled',
      MemberClusters: [`${prefix}-valkey-0001-001`, `${prefix}-valkey-0001-002`],
    });
  });

  it('when each container starts with its environment and the secrets ECS would fetch for it, then fleetbot accepts the configuration for its role, and without them the bot and dashboard refuse to start and the worker has no chat and no Redis password', async () => {
    const { serviceArns } = await moto.json('ecs', 'AmazonEC2ContainerServiceV20141113.ListServices', {
      cluster: service.outputs.ClusterName,
    });
    const { services } = await moto.json('ecs', 'AmazonEC2ContainerServiceV20141113.DescribeServices', {
      cluster: service.outputs.ClusterName,
      services: serviceArns,
    });
    const byName = Object.fromEntries(
      listOf<{
        serviceName: string;
        desiredCount: number;
        taskDefinition: string;
        loadBalancers: Json[];
        launchType: string;
      }>(services).map((s) => [s.serviceName, s]),
    );
    expect(Object.fromEntries(roles.map((r) => [r, byName[r]?.desiredCount]))).toEqual({
      bot: 2,
      worker: 3,
      dashboard: 1,
    });
    // moto keeps neither a service's load balancers nor its launch type (see the top of this file).
    expect(roles.map((r) => [byName[r]?.loadBalancers, byName[r]?.launchType])).toEqual(
      roles.map(() => [[], 'EC2']),
    );

    const secretValue = async (valueFrom: string): Promise<string> => {
      if (valueFrom.startsWith('arn:aws:secretsmanager:'))
        return String(
          (await moto.json('secretsmanager', 'secretsmanager.GetSecretValue', { SecretId: valueFrom }))
            .SecretString,
        );
      const name = valueFrom.match(/^arn:aws:ssm:[a-z0-9-]+:\d{12}:parameter(\/.+)$/)?.[1];
      expect(name, valueFrom).toBeDefined();
      const got = await moto.ssm.send(new GetParameterCommand({ Name: name, WithDecryption: true }));
      expect(got.Parameter?.Type).toBe('SecureString');
      return got.Parameter?.Value ?? '';
    };

    for (const role of roles) {
      const { taskDefinition } = await moto.json(
        'ecs',
        'AmazonEC2ContainerServiceV20141113.DescribeTaskDefinition',
        {
          taskDefinition: byName[role]?.taskDefinition,
        },
      );
      const def = taskDefinition as {
        family: string;
        networkMode: string;
        taskRoleArn?: string;
        containerDefinitions: {
          command: string[];
          image: string;
          environment: { name: string; value: string }[];
          secrets: { name: string; valueFrom: string }[];
        }[];
      };
      expect(def.family).toBe(`${prefix}-test-${role}`);
      // Kept by moto: family and containers; not the task role or awsvpc (see the top of this file).
      expect([def.networkMode, def.taskRoleArn]).toEqual(['bridge', undefined]);
      const [container] = def.containerDefinitions;
      expect(container?.image).toBe(serviceParameters.Image);
      const roleFlag = container?.command ?? [];
      const environment = Object.fromEntries((container?.environment ?? []).map((e) => [e.name, e.value]));
      const secrets: Record<string, string> = {};
      for (const s of container?.secrets ?? []) secrets[s.name] = await secretValue(s.valueFrom);

      const config = loadConfig({ ...environment, ...secrets }, { roles: parseRoles(roleFlag[1] ?? '') });
      expect(config.roles).toEqual([role]);
      expect(config.env).toBe('test');
      expect(config.redis).toMatchObject({
        nodes: [{ host: standIns['ValkeyReplicationGroup.ConfigurationEndPoint.Address'], port: 6379 }],
        cluster: true,
        tls: true,
        password: authToken,
      });
      expect(config.aws).toMatchObject({
        region,
        parameterPrefix: prefix,
        kmsKeyId: fleet.outputs.KmsKeyAlias,
      });
      if (role !== 'dashboard') {
        expect(config.aws.secretBinderFunction).toBe(fleet.outputs.SecretBinderFunctionName);
        expect(config.instances).toMatchObject({
          launchTemplate: fleet.outputs.LaunchTemplateName,
          profileName: fleet.outputs.InstanceProfileName,
          securityGroupId: fleet.outputs.SecurityGroupId,
          subnetIds: [net.fleetSubnet],
        });
        expect(config.provisioning).toMatchObject({
          bootstrapCheckDocument: fleet.outputs.BootstrapCheckDocumentName,
          restartDocument: fleet.outputs.RestartDocumentName,
        });
        expect(config.rollout.deployDocument).toBe(fleet.outputs.DeployDocumentName);
        expect(config.access.slackAdminIds).toEqual(['U0ADMIN1']);
        expect(config.slack?.botToken).toBe(ownSecrets.SlackBotTokenParameter);
        expect(config.telegram?.token).toBe(ownSecrets.TelegramBotTokenParameter);
      }
      if (role === 'bot') {
        expect(config.telegram?.webhook).toEqual({
          url: service.outputs.TelegramWebhookUrl,
          secret: ownSecrets.TelegramWebhookSecretParameter,
          host: '0.0.0.0',
          port: 8443,
        });
        expect(config.slack).toMatchObject({
          host: '0.0.0.0',
          port: 3000,
          signingSecret: ownSecrets.SlackSigningSecretParameter,
        });
      }
      if (role === 'dashboard') {
        expect(config.dashboard).toMatchObject({
          host: '0.0.0.0',
          port: 8080,
          password: ownSecrets.DashboardPasswordParameter,
        });
        expect(config.telegram).toBeUndefined();
        expect(config.slack).toBeUndefined();
      }

      // The environment alone is not enough: the secrets arrive nowhere else. The bot and the
      // dashboard refuse to start without theirs; the worker would start with no chat to report
      // progress to and no Redis password.
      let bare: unknown;
      try {
        bare = loadConfig(environment, { roles: parseRoles(roleFlag[1] ?? '') });
      } catch (error) {
        bare = error;
      }
      if (role === 'worker')
        expect(bare).toMatchObject({ telegram: undefined, slack: undefined, redis: { password: undefined } });
      else {
        expect(bare, role).toBeInstanceOf(ConfigError);
        expect((bare as ConfigError).message).toContain(
          role === 'bot' ? 'TELEGRAM_BOT_TOKEN' : 'DASHBOARD_PASSWORD',
        );
      }
    }
  });

  it('when the load balancer is described, then HTTP redirects, HTTPS carries the certificate and sends the two receiver paths to their ports and everything else to the dashboard', async () => {
    const [balancer] = listOf<{ LoadBalancerArn: string }>(
      (await moto.query('elasticloadbalancing', 'DescribeLoadBalancers')).LoadBalancers,
    );
    const listeners = listOf<{
      ListenerArn: string;
      Port: string;
      Protocol: string;
      Certificates?: Json;
      SslPolicy?: string;
      DefaultActions: Record<string, Json>[];
    }>(
      (
        await moto.query('elasticloadbalancing', 'DescribeListeners', {
          LoadBalancerArn: balancer?.LoadBalancerArn ?? '',
        })
      ).Listeners,
    );
    const groups = listOf<{
      TargetGroupArn: string;
      Port: string;
      HealthCheckPath: string;
      Matcher: { HttpCode: string };
      TargetType: string;
    }>((await moto.query('elasticloadbalancing', 'DescribeTargetGroups')).TargetGroups);
    const port = (arn: Json) => groups.find((g) => g.TargetGroupArn === arn)?.Port;
    const byPort = Object.fromEntries(listeners.map((l) => [l.Port, l]));
    expect(Object.keys(byPort).sort()).toEqual(['443', '80']);
    expect(byPort['80']?.DefaultActions).toEqual([
      { Type: 'redirect', RedirectConfig: { Protocol: 'HTTPS', Port: '443', StatusCode: 'HTTP_301' } },
    ]);
    const https = byPort['443'];
    expect(https?.Protocol).toBe('HTTPS');
    expect(https?.Certificates).toEqual([{ CertificateArn: net.certificateArn }]);
    expect(https?.SslPolicy).toBe('ELBSecurityPolicy-TLS13-1-2-2021-06');

    const rules = listOf<{
      Priority: string;
      Conditions: Json;
      Actions: { Type: string; TargetGroupArn: string }[];
    }>(
      (await moto.query('elasticloadbalancing', 'DescribeRules', { ListenerArn: https?.ListenerArn ?? '' }))
        .Rules,
    );
    const routes = rules.map((r) => [
      r.Priority,
      listOf<{ PathPatternConfig: { Values: string[] } }>(r.Conditions).flatMap(
        (c) => c.PathPatternConfig.Values,
      ),
      r.Actions.map((a) => [a.Type, port(a.TargetGroupArn)]),
    ]);
    expect(routes).toEqual([
      ['10', ['/slack/events'], [['forward', '3000']]],
      ['20', ['/telegram/webhook'], [['forward', '8443']]],
      ['default', [], [['forward', '8080']]],
    ]);
    expect(groups.map((g) => [g.Port, g.TargetType, g.HealthCheckPath, g.Matcher.HttpCode]).sort()).toEqual([
      ['3000', 'ip', '/slack/events', '404'],
      ['8080', 'ip', '/healthz', '200'],
      ['8443', 'ip', '/telegram/webhook', '404'],
    ]);
  });

  it('when the deployed security groups are described, then the tasks admit only the load balancer on 3000, 8080 and 8443, and Valkey only the tasks on 6379', async () => {
    const physical = (name: string) =>
      service.resources.find((r) => r.LogicalResourceId === name)?.PhysicalResourceId ?? '';
    const ids = {
      balancer: physical('LoadBalancerSecurityGroup'),
      tasks: physical('TaskSecurityGroup'),
      valkey: physical('ValkeySecurityGroup'),
    };
    expect(ids.tasks).toBe(service.outputs.TaskSecurityGroupId);
    const res = await moto.ec2.send(new DescribeSecurityGroupsCommand({ GroupIds: Object.values(ids) }));
    const ingress = (id: string) =>
      (res.SecurityGroups?.find((g) => g.GroupId === id)?.IpPermissions ?? [])
        .flatMap((p: IpPermission) => [
          ...(p.UserIdGroupPairs ?? []).map((g) => [p.FromPort, p.ToPort, g.GroupId]),
          ...(p.IpRanges ?? []).map((r) => [p.FromPort, p.ToPort, r.CidrIp]),
        ])
        .sort((a, b) => Number(a[0]) - Number(b[0]));
    expect(ingress(ids.tasks)).toEqual([
      [3000, 3000, ids.balancer],
      [8080, 8080, ids.balancer],
      [8443, 8443, ids.balancer],
    ]);
    expect(ingress(ids.valkey)).toEqual([[6379, 6379, ids.tasks]]);
    expect(ingress(ids.balancer)).toEqual([
      [80, 80, '0.0.0.0/0'],
      [443, 443, '0.0.0.0/0'],
    ]);
    expect(res.SecurityGroups?.every((g) => g.VpcId === net.vpcId)).toBe(true);
  });

  it("when IAM is asked, then the execution role trusts only this account's ECS tasks and reads exactly the parameters and the secret the task definitions name; the task role is the fleet stack's bot role", async () => {
    const roleName =
      service.resources.find((r) => r.LogicalResourceId === 'TaskExecutionRole')?.PhysicalResourceId ?? '';
    const trust = await trustPolicyOf(moto, roleName);
    expect(trust.Statement).toEqual([
      {
        Effect: 'Allow',
        Principal: { Service: 'ecs-tasks.amazonaws.com' },
        Action: 'sts:AssumeRole',
        Condition: { StringEquals: { 'aws:SourceAccount': moto.accountId } },
      },
    ]);
    const policy = await inlinePolicyOf(moto, roleName, 'image-logs-own-secrets');
    const bySid = (sid: string) => policy.Statement.find((s) => s.Sid === sid);
    expect(bySid('ReadFleetbotSecrets')?.Resource).toEqual(
      Object.values(t.Parameters)
        .filter((_, i) => Object.keys(t.Parameters)[i]?.endsWith('Parameter'))
        .map((p) => `arn:aws:ssm:${region}:${moto.accountId}:parameter${p.Default}`),
    );
    expect(bySid('ReadValkeyAuthToken')?.Resource).toBe(standIns.ValkeyAuthToken);
    expect(bySid('DecryptFleetbotSecrets')?.Resource).toBe(net.keyArn);
    const logGroups = listOf<{ logGroupName: string; arn: string }>(
      (
        await moto.json('logs', 'Logs_20140328.DescribeLogGroups', {
          logGroupNamePrefix: `/${prefix}/test/service/`,
        })
      ).logGroups,
    );
    expect(logGroups.map((g) => g.logGroupName).sort()).toEqual(
      roles.map((r) => `/${prefix}/test/service/${r}`).sort(),
    );
    expect(bySid('WriteServiceLogs')?.Resource).toEqual(
      ['bot', 'worker', 'dashboard'].map((r) => logGroups.find((g) => g.logGroupName.endsWith(`/${r}`))?.arn),
    );

    // The task role every task definition names (asserted on the template: moto drops it).
    expect(serviceParameters.BotRoleArn).toBe(`arn:aws:iam::${moto.accountId}:role/${prefix}-${region}-bot`);
    const botTrust = await trustPolicyOf(moto, `${prefix}-${region}-bot`);
    expect(botTrust.Statement[0]?.Principal).toEqual({ Service: 'ecs-tasks.amazonaws.com' });
    expect(roleName).not.toBe(`${prefix}-${region}-bot`);
  });
});

describe('infra/service.yaml for CloudFormation', () => {
  it('when cfn-lint checks the template, then it reports nothing and exits 0', async () => {
    // Its verdict is the point, not its speed.
    expect(await linted).toEqual({ code: 0, stdout: '' });
  }, 90_000);
});
