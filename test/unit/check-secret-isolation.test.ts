import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2';
import { AddTagsToResourceCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { shellcheck } from '../support/tools.js';

/**
 * infra/check-secret-isolation.sh, everything but the real account: its reads with the real aws CLI
 * against moto (which enforces no IAM, so isolation looks broken there, as it must be reported),
 * with a stub CLI answering as IAM would, and the workstation mode's binding checks and the exact
 * payload it would send through Session Manager.
 */

const script = fileURLToPath(new URL('../../infra/check-secret-isolation.sh', import.meta.url));
const region = 'us-east-1';
// moto's default account, as the CLI (which cannot send x-moto-account-id) reaches it.
const prefix = `iso${Math.random().toString(36).slice(2, 10)}`;
const own = `/${prefix}/users/111/openai-api-key`;
const other = `/${prefix}/users/222/openai-api-key`;
const canary = `sk-CANARY${Date.now()}isolation${'c'.repeat(10)}`;
let scratch: string;
let stubBin: string;
let motoUrl: string;
let instanceId = '';
let instanceArn = '';

function run(args: string[], env: Record<string, string> = {}, input?: string) {
  const result = spawnSync('bash', [script, ...args], {
    encoding: 'utf8',
    input,
    env: {
      PATH: process.env.PATH ?? '',
      HOME: scratch,
      AWS_ACCESS_KEY_ID: 'testing',
      AWS_SECRET_ACCESS_KEY: 'testing',
      AWS_ENDPOINT_URL: motoUrl,
      ...env,
    },
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** An `aws` that answers get-parameter as IAM would: names in STUB_DENIED are refused, STUB_MISSING unknown. */
const stub = `#!/bin/bash
name=''
while [[ $# -gt 0 ]]; do
  if [[ "$1" == --name ]]; then name="$2"; fi
  shift
done
if [[ " \${STUB_DENIED:-} " == *" $name "* ]]; then
  echo "An error occurred (AccessDeniedException) when calling the GetParameter operation: User: arn:aws:sts::123456789012:assumed-role/fleetbot-instance/i-0abc is not authorized to perform: ssm:GetParameter on resource: $name with an explicit deny" >&2
  exit 254
fi
if [[ " \${STUB_MISSING:-} " == *" $name "* ]]; then
  echo "An error occurred (ParameterNotFound) when calling the GetParameter operation: " >&2
  exit 254
fi
echo "$name"
`;

beforeAll(async () => {
  motoUrl = inject('motoUrl');
  scratch = mkdtempSync(join(tmpdir(), 'isolation-'));
  stubBin = join(scratch, 'bin');
  spawnSync('mkdir', ['-p', stubBin]);
  writeFileSync(join(stubBin, 'aws'), stub);
  chmodSync(join(stubBin, 'aws'), 0o755);
  const clientOptions = {
    region,
    endpoint: motoUrl,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    maxAttempts: 1,
  };
  const ec2 = new EC2Client(clientOptions);
  const ssm = new SSMClient(clientOptions);
  const launched = await ec2.send(
    new RunInstancesCommand({ ImageId: 'ami-12c6146b', InstanceType: 't3.small', MinCount: 1, MaxCount: 1 }),
  );
  instanceId = launched.Instances?.[0]?.InstanceId ?? '';
  instanceArn = `arn:aws:ec2:${region}:${launched.OwnerId}:instance/${instanceId}`;
  for (const name of [own, other])
    await ssm.send(new PutParameterCommand({ Name: name, Value: canary, Type: 'SecureString' }));
  await ssm.send(
    new AddTagsToResourceCommand({
      ResourceType: 'Parameter',
      ResourceId: other,
      Tags: [
        {
          Key: 'InstanceArn',
          Value: `arn:aws:ec2:${region}:${launched.OwnerId}:instance/i-0fffffffffffffff0`,
        },
      ],
    }),
  );
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const withStub = (env: Record<string, string>) => ({ PATH: `${stubBin}:${process.env.PATH ?? ''}`, ...env });

/** The workstation mode against the test instance and parameters, printing its session command instead of running it. */
const dryRunArgs = () => [
  '--region',
  region,
  '--instance',
  instanceId,
  '--own',
  own,
  '--other',
  other,
  '--dry-run',
];

describe('check-secret-isolation.sh', () => {
  it('when shellcheck reads it at style level, then it reports nothing', () => {
    expect(shellcheck(script)).toEqual({ status: 0, output: '' });
  });

  it('when IAM allows the own parameter and denies the other, then it passes', () => {
    const result = run(
      ['--on-instance', '--region', region, '--own', own, '--other', other],
      withStub({ STUB_DENIED: other }),
    );
    expect(result.stdout).toBe(
      [
        `own user:     ${own}: allowed`,
        `another user: ${other}: denied (AccessDeniedException)`,
        'RESULT: PASS: ec2:SourceInstanceARN reached SSM and matched only its own parameter tag',
        '',
      ].join('\n'),
    );
    expect(result.status).toBe(0);
  });

  it('when the instance cannot read its own parameter, then it fails and says what that means', () => {
    const result = run(
      ['--on-instance', '--region', region, '--own', own, '--other', other],
      withStub({ STUB_DENIED: `${own} ${other}` }),
    );
    expect(result.stdout).toContain(
      'RESULT: FAIL: this instance may not read its own parameter (is ec2:SourceInstanceARN reaching SSM?)',
    );
    expect(result.status).toBe(1);
  });

  it('when a read fails for another reason, then nothing is claimed', () => {
    const result = run(
      ['--on-instance', '--region', region, '--own', own, '--other', other],
      withStub({ STUB_MISSING: other }),
    );
    expect(result.stdout).toContain(`another user: ${other}: error (ParameterNotFound)`);
    expect(result.stdout).toContain('RESULT: INCONCLUSIVE');
    expect(result.status).toBe(3);
  });

  it('when the reads go to moto, which enforces no IAM, then reading another user parameter is a failure and no value is printed', () => {
    const result = run(['--on-instance', '--region', region, '--own', own, '--other', other]);
    expect(result.stdout).toContain(`another user: ${other}: allowed`);
    expect(result.stdout).toContain("RESULT: FAIL: this instance read another user's parameter");
    expect(result.status).toBe(1);
    expect(result.stdout + result.stderr).not.toContain(canary);
  });

  it('when the own parameter is not bound to the instance, then the workstation mode stops before any session', () => {
    const result = run(dryRunArgs());
    expect(result.stdout).toContain(
      `RESULT: INCONCLUSIVE: ${own} is tagged InstanceArn=None, not ${instanceArn}`,
    );
    expect(result.stdout).not.toContain('start-session');
    expect(result.status).toBe(3);
  });

  it('when the bindings are right, then the session command carries exactly the reads, which pass where IAM isolates', async () => {
    const ssm = new SSMClient({
      region,
      endpoint: motoUrl,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
      maxAttempts: 1,
    });
    await ssm.send(
      new AddTagsToResourceCommand({
        ResourceType: 'Parameter',
        ResourceId: own,
        Tags: [{ Key: 'InstanceArn', Value: instanceArn }],
      }),
    );
    const result = run(dryRunArgs());
    expect(result.status).toBe(0);
    expect(result.stdout).toContain(`bindings: ${own} -> ${instanceArn}`);
    expect(result.stdout).toContain(
      `aws ssm start-session --region ${region} --target ${instanceId} --document-name AWS-StartInteractiveCommand --parameters`,
    );
    // What the instance's shell would run: `echo <base64> | base64 -d | bash -s <region> <own> <other>`.
    const m =
      /--parameters '\{"command":\["echo ([A-Za-z0-9+/=]+) \| base64 -d \| bash -s (\S+) (\S+) (\S+)"\]\}'$/m.exec(
        result.stdout,
      );
    expect(m?.slice(2)).toEqual([region, own, other]);
    const payload = Buffer.from(m?.[1] ?? '', 'base64').toString();
    const onInstance = spawnSync('bash', ['-s', region, own, other], {
      input: payload,
      encoding: 'utf8',
      env: { PATH: `${stubBin}:${process.env.PATH ?? ''}`, STUB_DENIED: other },
    });
    expect(onInstance.stdout).toContain('RESULT: PASS');
    expect(onInstance.status).toBe(0);
  });

  it('when an argument could smuggle shell into the session command, then it is refused before anything runs', () => {
    for (const bad of [`${own};reboot`, '/fleetbot/users/1/$(id)', 'fleetbot/users/1/k', own]) {
      const result = run(['--on-instance', '--region', region, '--own', own, '--other', bad]);
      expect(result.status, bad).toBe(2);
      expect(result.stdout, bad).toBe('');
    }
    expect(run(['--on-instance', '--region', 'us-east-1;id', '--own', own, '--other', other]).status).toBe(2);
  });
});
