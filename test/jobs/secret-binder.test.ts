import {
  CreateLaunchTemplateCommand,
  EC2Client,
  RunInstancesCommand,
  type RunInstancesCommandInput,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { AddTagsToResourceCommand, ListTagsForResourceCommand, SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { BinderFailedError, createLambdaBinder } from '../../src/aws/secret-binder.js';
import { createSecretStore } from '../../src/aws/secret-store.js';
import { BindingRefusedError, type SecretStore } from '../../src/core/ports/secret-store.js';
import type { SecretKindName } from '../../src/core/secret-kinds.js';
import { testAccountId, withAccount } from '../peers/aws-account.js';
import { type AwsSimulator, startAwsSimulator } from '../peers/aws-simulator.js';
import { deploySecretBinder } from '../support/secret-binder.js';

/**
 * The stack's secret binder (infra/fleetbot.yaml, SecretBinderFunction), its code as shipped, run by
 * the simulator's Lambda against moto, called through fleetbot's own store. It binds a user's
 * parameters only to that user's live fleet instance of this env launched from the fleet's template.
 */

const accountId = testAccountId();
const prefix = 'fbbind';
const kinds: SecretKindName[] = ['telegram-bot-token', 'openai-api-key'];
const canary = `sk-CANARY${Date.now()}binder${'b'.repeat(12)}`;
let simulator: AwsSimulator;
let ec2: EC2Client;
let ssm: SSMClient;
let lambda: LambdaClient;
let store: SecretStore;
let binderName: string;
let templateId: string;

const alice = '4101';
const bob = '4102';
const instances = {
  alice: '',
  bob: '',
  aliceOutsideTemplate: '',
  aliceOtherEnv: '',
  aliceUntagged: '',
  aliceTerminated: '',
};

beforeAll(async () => {
  simulator = await startAwsSimulator({ motoUrl: inject('motoUrl') });
  const options = {
    region: 'us-east-1',
    endpoint: simulator.url,
    maxAttempts: 1,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  ec2 = withAccount(new EC2Client(options), accountId);
  ssm = withAccount(new SSMClient(options), accountId);
  lambda = withAccount(new LambdaClient(options), accountId);
  const template = await ec2.send(
    new CreateLaunchTemplateCommand({
      LaunchTemplateName: `${prefix}-instance`,
      LaunchTemplateData: { ImageId: 'ami-12c6146b', InstanceType: 't3.small' },
    }),
  );
  templateId = template.LaunchTemplate?.LaunchTemplateId ?? '';
  binderName = deploySecretBinder(simulator.control, accountId, {
    prefix,
    env: 'prod',
    launchTemplateId: templateId,
  });
  store = createSecretStore(ssm, {
    prefix,
    kmsKeyId: 'alias/aws/ssm',
    binder: createLambdaBinder(lambda, binderName),
  });
  for (const user of [alice, bob]) for (const kind of kinds) await store.put(user, kind, `${canary}-${user}`);

  const fleetTags = (user: string, env = 'prod') => [
    { Key: 'app', Value: 'fleetbot' },
    { Key: 'env', Value: env },
    { Key: 'user', Value: user },
  ];
  const launch = async (input: Partial<RunInstancesCommandInput>, tags: { Key: string; Value: string }[]) => {
    const run = await ec2.send(
      new RunInstancesCommand({
        MinCount: 1,
        MaxCount: 1,
        TagSpecifications: [{ ResourceType: 'instance', Tags: tags }],
        ...input,
      }),
    );
    return run.Instances?.[0]?.InstanceId ?? '';
  };
  const fromTemplate = { LaunchTemplate: { LaunchTemplateId: templateId } };
  instances.alice = await launch(fromTemplate, fleetTags(alice));
  instances.bob = await launch(fromTemplate, fleetTags(bob));
  instances.aliceOutsideTemplate = await launch({ ImageId: 'ami-12c6146b' }, fleetTags(alice));
  instances.aliceOtherEnv = await launch(fromTemplate, fleetTags(alice, 'staging'));
  instances.aliceUntagged = await launch(fromTemplate, [{ Key: 'app', Value: 'fleetbot' }]);
  instances.aliceTerminated = await launch(fromTemplate, fleetTags(alice));
  await ec2.send(new TerminateInstancesCommand({ InstanceIds: [instances.aliceTerminated] }));
});

afterAll(async () => {
  await simulator?.close();
});

const arnOf = (instanceId: string) => `arn:aws:ec2:us-east-1:${accountId}:instance/${instanceId}`;

async function boundTo(user: string, kind: SecretKindName): Promise<string | undefined> {
  const tags = await ssm.send(
    new ListTagsForResourceCommand({
      ResourceType: 'Parameter',
      ResourceId: `/${prefix}/users/${user}/${kind}`,
    }),
  );
  return tags.TagList?.find((t) => t.Key === 'InstanceArn')?.Value;
}

async function refusal(user: string, instanceId: string): Promise<BindingRefusedError> {
  const error = await store.bindToInstance(user, kinds, arnOf(instanceId)).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(BindingRefusedError);
  return error as BindingRefusedError;
}

describe('the secret binder', () => {
  it('when a user is bound to their own fleet instance, then each parameter carries its ARN, computed by the binder', async () => {
    // The ARN the service passes is ignored beyond its instance id: the binder works it out.
    await store.bindToInstance(
      alice,
      kinds,
      `arn:aws:ec2:eu-west-9:000000000000:instance/${instances.alice}`,
    );
    for (const kind of kinds) expect(await boundTo(alice, kind)).toBe(arnOf(instances.alice));
    const logs = simulator.control.functionLogs(accountId, binderName);
    expect(logs.at(-1)).toContain(`"bound":"${instances.alice}"`);
    expect(logs.join('\n')).not.toContain(canary);
  });

  it.each([
    ['another user', 'bob', /belongs to user 4102, not 4101/],
    [
      'an instance launched without the fleet template',
      'aliceOutsideTemplate',
      /not launched from the fleet launch template/,
    ],
    ['an instance of another env', 'aliceOtherEnv', /not a fleet instance of env prod/],
    ['an instance without a user tag', 'aliceUntagged', /belongs to user \(none\), not 4101/],
    ['a terminated instance', 'aliceTerminated', /it is terminated/],
  ])(
    'when asked to bind to %s, then it refuses, says why, and the binding stays as it was',
    async (_, which, why) => {
      const before = await boundTo(alice, 'openai-api-key');
      const error = await refusal(alice, instances[which as keyof typeof instances]);
      expect(error.reason).toMatch(why);
      for (const kind of kinds) expect(await boundTo(alice, kind)).toBe(before);
    },
  );

  it("when the parameter's user tag was changed, then the binder still goes by its name", async () => {
    // The service may retag a parameter's `user`; the name is what says whose it is.
    await ssm.send(
      new AddTagsToResourceCommand({
        ResourceType: 'Parameter',
        ResourceId: `/${prefix}/users/${alice}/openai-api-key`,
        Tags: [{ Key: 'user', Value: bob }],
      }),
    );
    const error = await refusal(alice, instances.bob);
    expect(error.reason).toMatch(/belongs to user 4102, not 4101/);
    expect(await boundTo(alice, 'openai-api-key')).toBe(arnOf(instances.alice));
  });

  it('when the instance does not exist or the input is malformed, then it refuses without tagging', async () => {
    expect((await refusal(alice, 'i-0123456789abcdef0')).reason).toMatch(
      /i-0123456789abcdef0 does not exist/,
    );
    expect((await refusal(alice, 'not-an-instance')).reason).toMatch(/instanceId must be an EC2 instance id/);
    const badUser = await createLambdaBinder(lambda, binderName)
      .bind('alice', kinds, instances.alice)
      .catch((e: unknown) => e);
    expect(badUser).toBeInstanceOf(BindingRefusedError);
    expect((badUser as BindingRefusedError).reason).toMatch(/userId must be a numeric Telegram user id/);
  });

  it("when the binder's own AWS calls fail, then fleetbot gets their code to wait out or report, not a refusal", async () => {
    simulator.control.injectFault(accountId, { operation: 'AddTagsToResource', kind: 'throttle', count: 1 });
    const error = await store.bindToInstance(bob, kinds, arnOf(instances.bob)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BinderFailedError);
    expect((error as BinderFailedError).awsCode).toBe('ThrottlingException');
    await store.bindToInstance(bob, kinds, arnOf(instances.bob));
    for (const kind of kinds) expect(await boundTo(bob, kind)).toBe(arnOf(instances.bob));
  });

  it('when the function does not exist, then Lambda says so as ResourceNotFoundException', async () => {
    const error = await createLambdaBinder(lambda, 'fbbind-missing')
      .bind(alice, kinds, instances.alice)
      .catch((e: unknown) => e);
    expect((error as Error).name).toBe('ResourceNotFoundException');
  });
});
