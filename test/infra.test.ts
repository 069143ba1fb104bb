// biome-ignore-all lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub strings and IAM policy variables are literal ${...} text here.
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  CreateSubnetCommand,
  CreateVpcCommand,
  DescribeInstancesCommand,
  DescribeLaunchTemplateVersionsCommand,
  DescribeSecurityGroupsCommand,
} from '@aws-sdk/client-ec2';
import { DescribeParametersCommand, ListCommandsCommand, ListDocumentsCommand } from '@aws-sdk/client-ssm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testAccountId } from './peers/aws-account.js';
import {
  list,
  loadTemplate,
  type PolicyDocument,
  policiesOf,
  resource,
  type Statement,
  type Template,
  templatePath,
} from './support/cfn-template.js';
import {
  createStack,
  inlinePolicyOf,
  type Moto,
  motoAccount,
  type Stack,
  trustPolicyOf,
} from './support/moto-account.js';
import { listOf } from './support/xml.js';

/*
 * infra/fleetbot.yaml three ways: cfn-lint, the policies and scripts read from the template itself,
 * and a real CloudFormation deployment into moto.
 *
 * moto 5.2.1 gaps met on the way (measured against this template):
 *  - AWS::KMS::Key Tags: read in the KMS API shape (TagKey/TagValue), so CloudFormation's Key/Value
 *    fails the whole stack. The key carries no tags.
 *  - AWS::SSM::Document without DocumentFormat is refused; the template states CloudFormation's default.
 *  - AWS::IAM::Role Policies are stored as a Python repr, not JSON; the template keeps statements in
 *    AWS::IAM::Policy resources, which moto stores and validates like IAM does.
 *  - AWS::IAM::Role ManagedPolicyArns are ignored (the roles no longer carry any).
 *  - AWS::SSM::Document of DocumentType Session (the Session Manager preferences) is stored and listed
 *    like a Command document; nothing in moto reads it, so what it configures is asserted on its content.
 *  - AWS::S3::Bucket encryption, public access block and bucket policy, AWS::Logs::LogGroup KmsKeyId,
 *    AWS::EC2::VPCEndpoint and AWS::IAM::ManagedPolicy deploy, but moto enforces none of them (no IAM,
 *    no TLS-only check): the evaluator suite (test/infra/iam-evaluator.test.ts) covers the policies.
 *  - A resource that cannot be created (a second SSM-SessionManagerRunShell in one account and region)
 *    fails the CreateStack call itself with HTTP 400 DocumentAlreadyExists instead of a rolled-back stack.
 *  - An Fn::If in a policy's Statement list that resolves to AWS::NoValue makes the policy
 *    MalformedPolicyDocument (CloudFormation drops the item); conditional statements live in their own
 *    conditional AWS::IAM::Policy (InstanceSessionLogsPolicy) instead.
 *  - AWS::EC2::SecurityGroup SecurityGroupEgress is ignored: the group keeps EC2's default allow-all
 *    egress. Egress is therefore asserted on the template, ingress on the deployed group.
 *  - A document CloudFormation created from object content is stored unserialized: DescribeDocument
 *    answers HTTP 500 (it hashes a dict) and GetDocument returns Content as an object, not a string.
 *    Existence is checked with ListDocuments, content with GetDocument.
 *  - RunInstances from a launch template applies its image, type, security groups and metadata
 *    options but not its IamInstanceProfile; the profile is asserted on the template version.
 *  - Likewise GetKeyPolicy returns the key policy CloudFormation set as an object, not a string.
 *  - Unsigned requests are routed to S3; moto picks the service from the Authorization header's
 *    credential scope and does not verify the signature, so a placeholder header is enough.
 */

import { createFleet } from '../src/aws/fleet.js';
import { createRunCommand } from '../src/aws/run-command.js';
import { createSecretStore } from '../src/aws/secret-store.js';
import { versionPattern as coreVersionPattern } from '../src/core/version.js';

const run = promisify(execFile);
const region = 'us-east-1';
// The deploy document must carry exactly the pattern the bot and the worker check.
const versionPattern = coreVersionPattern.source;
const servicePattern = '^[a-z][a-z0-9@._-]{0,63}$';

interface DocumentContent {
  schemaVersion: string;
  parameters?: Record<
    string,
    { type: string; allowedPattern?: string; interpolationType?: string; default?: unknown }
  >;
  mainSteps: { action: string; inputs: { runCommand: string[] } }[];
}

const actions = (s: Statement): string[] => list(s.Action) as string[];

/** IAM action patterns are case-insensitive globs. */
function grants(pattern: string, action: string): boolean {
  const glob = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${glob}$`, 'i').test(action);
}

function bySid(doc: PolicyDocument, sid: string): Statement {
  const found = doc.Statement.find((s) => s.Sid === sid);
  if (!found) throw new Error(`no statement ${sid}`);
  return found;
}

function documentContent(t: Template, name: string): DocumentContent {
  return resource(t, name).Properties.Content as DocumentContent;
}

interface ScriptRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a document's runCommand the way the SSM agent does: the lines joined into one file that is
 * executed, so its #!/bin/bash line picks the shell. Absolute paths are pointed into a scratch dir.
 */
async function runDocument(
  doc: DocumentContent,
  dir: string,
  paths: Record<string, string>,
  env: Record<string, string>,
): Promise<ScriptRun> {
  let text = `${doc.mainSteps[0]?.inputs.runCommand.join('\n')}\n`;
  for (const [from, to] of Object.entries(paths)) {
    expect(text).toContain(from);
    text = text.replaceAll(from, to);
  }
  const file = join(dir, `_script-${Math.random().toString(36).slice(2)}.sh`);
  await writeFile(file, text, { mode: 0o700 });
  try {
    const { stdout, stderr } = await run(file, [], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

describe('infra/fleetbot.yaml', () => {
  let template: Template;
  let scratch: string;

  beforeAll(async () => {
    template = await loadTemplate();
    scratch = await mkdtemp(join(tmpdir(), 'fleetbot-infra-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it('when cfn-lint checks the template, then it reports nothing and exits 0', async () => {
    // Its verdict is the point, not its speed: about 9 s alone, over 20 s on a busy 2-core machine.
    const result = await run('cfn-lint', [templatePath]).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (error: { code?: number; stdout?: string }) => ({ code: error.code, stdout: error.stdout }),
    );
    expect(result).toEqual({ code: 0, stdout: '' });
  }, 90_000);

  describe('instance role', () => {
    const own = (name: string) => resource(template, name).Properties.PolicyDocument as PolicyDocument;

    it('when an instance asks for a user parameter, then only a tag equal to its own instance ARN allows it', () => {
      expect(policiesOf(template, 'InstanceRole')).toEqual([
        own('InstancePolicy'),
        own('InstanceAgentPolicy'),
        own('InstanceSessionLogsPolicy'),
      ]);
      const doc = own('InstancePolicy');
      const allow = bySid(doc, 'ReadOwnUserSecretsOnly');
      expect(allow.Effect).toBe('Allow');
      expect(actions(allow).sort()).toEqual(['ssm:GetParameter', 'ssm:GetParameters']);
      expect(allow.Resource).toEqual({
        'Fn::Sub': 'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${Prefix}/users/*',
      });
      // A plain string: inside Fn::Sub CloudFormation would try to resolve the IAM variable itself.
      expect(allow.Condition).toEqual({
        StringEquals: { 'ssm:resourceTag/InstanceArn': '${ec2:SourceInstanceARN}' },
        Null: { 'ec2:SourceInstanceARN': 'false' },
      });
      const otherReads = policiesOf(template, 'InstanceRole')
        .flatMap((d) => d.Statement)
        .filter(
          (s) => s.Effect === 'Allow' && s !== allow && actions(s).some((a) => grants(a, 'ssm:GetParameter')),
        );
      expect(otherReads).toEqual([]);
    });

    it("when the agent-only policy replaces AmazonSSMManagedInstanceCore, then it allows no read and Denies cover every parameter outside the caller's own", () => {
      expect(resource(template, 'InstanceRole').Properties.ManagedPolicyArns).toBeUndefined();
      const agent = [...own('InstanceAgentPolicy').Statement, ...own('InstanceSessionLogsPolicy').Statement];
      const allowed = agent.filter((s) => s.Effect === 'Allow').flatMap(actions);
      // What AmazonSSMManagedInstanceCore allowed that reads parameters or documents.
      for (const read of ['ssm:GetParameter', 'ssm:GetParameters', 'ssm:GetDocument', 'ssm:DescribeDocument'])
        expect(
          allowed.some((a) => grants(a, read)),
          read,
        ).toBe(false);
      expect(allowed).toEqual(
        expect.arrayContaining([
          'ssm:UpdateInstanceInformation',
          'ec2messages:GetMessages',
          'ssmmessages:OpenDataChannel',
          'ssm:GetDeployablePatchSnapshotForInstance',
          'ssm:PutComplianceItems',
        ]),
      );
      expect(
        allowed.every((a) => !a.includes('*')),
        'no wildcard actions',
      ).toBe(true);

      const doc = own('InstancePolicy');
      const users = {
        'Fn::Sub': 'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${Prefix}/users/*',
      };
      expect(bySid(doc, 'DenyReadingOtherParameters')).toEqual({
        Sid: 'DenyReadingOtherParameters',
        Effect: 'Deny',
        Action: 'ssm:GetParameter*',
        NotResource: users,
      });

      const foreign = bySid(doc, 'DenyOtherInstancesSecrets');
      expect(foreign).toMatchObject({ Effect: 'Deny', Action: 'ssm:GetParameter*', Resource: users });
      expect(foreign.Condition).toEqual({
        StringNotEquals: { 'ssm:resourceTag/InstanceArn': '${ec2:SourceInstanceARN}' },
      });
      const noInstance = bySid(doc, 'DenySecretsWithoutSourceInstance');
      expect(noInstance).toMatchObject({ Effect: 'Deny', Action: 'ssm:GetParameter*', Resource: users });
      expect(noInstance.Condition).toEqual({ Null: { 'ec2:SourceInstanceARN': 'true' } });

      const mutation = bySid(doc, 'DenyRetaggingWritingAndEnumerating');
      expect(mutation.Effect).toBe('Deny');
      expect(mutation.Condition).toBeUndefined();
      expect(actions(mutation)).toEqual(
        expect.arrayContaining([
          'ssm:PutParameter',
          'ssm:DeleteParameter',
          'ssm:DeleteParameters',
          'ssm:AddTagsToResource',
          'ssm:RemoveTagsFromResource',
          'ssm:GetParametersByPath',
          'ssm:GetParameterHistory',
          'ssm:LabelParameterVersion',
        ]),
      );
      expect(list(mutation.Resource).map((r) => (r as { 'Fn::Sub': string })['Fn::Sub'])).toEqual([
        'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${Prefix}',
        'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${Prefix}/*',
      ]);
    });

    it('when nothing may launch with the role, then the profile waits for both policies', () => {
      expect(resource(template, 'InstanceProfile').DependsOn).toEqual([
        'InstancePolicy',
        'InstanceAgentPolicy',
      ]);
      expect(resource(template, 'InstancePolicy').Properties.Roles).toEqual([{ Ref: 'InstanceRole' }]);
      expect(resource(template, 'InstanceAgentPolicy').Properties.Roles).toEqual([{ Ref: 'InstanceRole' }]);
    });
  });

  describe('bot role', () => {
    const reads = [
      'ssm:GetParameter',
      'ssm:GetParameters',
      'ssm:GetParametersByPath',
      'ssm:GetParameterHistory',
    ];

    it('when every policy on the bot role is read, then none allows reading a parameter and Denies cover all reads', () => {
      expect(resource(template, 'BotRole').Properties.ManagedPolicyArns).toBeUndefined();
      const statements = policiesOf(template, 'BotRole').flatMap((d) => d.Statement);
      expect(statements.length).toBeGreaterThan(10);
      const allows = statements.filter((s) => s.Effect === 'Allow');
      expect(allows.filter((s) => s.NotAction !== undefined)).toEqual([]);
      const readAllows = allows.filter((s) => actions(s).some((a) => reads.some((r) => grants(a, r))));
      expect(readAllows).toEqual([]);
      const denied = statements
        .filter((s) => s.Effect === 'Deny' && s.Condition === undefined)
        .flatMap(actions);
      for (const r of reads)
        expect(
          denied.some((a) => grants(a, r)),
          r,
        ).toBe(true);
    });

    it('when the key policy is read, then the bot may only encrypt through SSM and only instances may decrypt', () => {
      const keyPolicy = resource(template, 'SecretsKey').Properties.KeyPolicy as PolicyDocument;
      const forBot = keyPolicy.Statement.filter(
        (s) => JSON.stringify(s.Principal) === JSON.stringify({ AWS: { 'Fn::GetAtt': ['BotRole', 'Arn'] } }),
      );
      expect(forBot.flatMap(actions).sort()).toEqual(['kms:Encrypt', 'kms:GenerateDataKey']);
      expect(forBot[0]?.Condition?.StringEquals).toEqual({
        'kms:ViaService': { 'Fn::Sub': 'ssm.${AWS::Region}.amazonaws.com' },
      });
      const decrypters = keyPolicy.Statement.filter(
        (s) => s.Effect === 'Allow' && actions(s).some((a) => grants(a, 'kms:Decrypt')),
      );
      expect(decrypters.map((s) => s.Sid).sort()).toEqual([
        'AccountAdministersTheKey',
        'InstancesDecryptViaSsm',
      ]);
      // The root statement would let any identity policy grant decryption; these take it back.
      expect(bySid(keyPolicy, 'NobodyElseDecrypts')).toMatchObject({
        Effect: 'Deny',
        Principal: '*',
        Action: 'kms:Decrypt',
        Condition: { ArnNotEquals: { 'aws:PrincipalArn': { 'Fn::GetAtt': ['InstanceRole', 'Arn'] } } },
      });
      expect(bySid(keyPolicy, 'DecryptOnlyViaSsm')).toMatchObject({ Effect: 'Deny', Principal: '*' });
    });

    it('when the bot launches, then RunInstances needs our launch template, IMDSv2, our type and the fleet tags', () => {
      const statements = policiesOf(template, 'BotRole').flatMap((d) => d.Statement);
      const launches = statements.filter(
        (s) => s.Effect === 'Allow' && actions(s).includes('ec2:RunInstances'),
      );
      expect(launches.length).toBeGreaterThan(0);
      const template_ = {
        'Fn::Sub':
          'arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:launch-template/${LaunchTemplate}',
      };
      for (const s of launches)
        expect(s.Condition?.StringEquals?.['ec2:LaunchTemplate'], s.Sid).toEqual(template_);
      const instance = bySid({ Statement: statements }, 'LaunchFleetInstancesFromTemplate');
      expect(instance.Condition?.StringEquals).toMatchObject({
        'ec2:MetadataHttpTokens': 'required',
        'ec2:InstanceType': { Ref: 'InstanceType' },
        'aws:RequestTag/app': 'fleetbot',
        'aws:RequestTag/env': { Ref: 'Env' },
      });
      expect(instance.Condition?.NumericLessThanEquals).toEqual({
        'ec2:MetadataHttpPutResponseHopLimit': '1',
      });

      const passRole = statements.filter(
        (s) => s.Effect === 'Allow' && actions(s).some((a) => grants(a, 'iam:PassRole')),
      );
      expect(passRole).toEqual([
        expect.objectContaining({
          Resource: { 'Fn::GetAtt': ['InstanceRole', 'Arn'] },
          Condition: { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } },
        }),
      ]);
      const lifecycle = bySid({ Statement: statements }, 'StartStopTerminateFleetInstances');
      expect(lifecycle.Condition?.StringEquals).toMatchObject({ 'aws:ResourceTag/app': 'fleetbot' });
    });

    it('when the bot sends a command, then only our documents and AWS-RunPatchBaseline, only to fleet instances, never a raw shell', () => {
      const statements = policiesOf(template, 'BotRole').flatMap((d) => d.Statement);
      const sends = statements.filter(
        (s) => s.Effect === 'Allow' && actions(s).some((a) => grants(a, 'ssm:SendCommand')),
      );
      const resources = sends.flatMap((s) =>
        list(s.Resource).map((r) => (r as { 'Fn::Sub': string })['Fn::Sub']),
      );
      expect(resources.sort()).toEqual(
        [
          'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${DeployDocument}',
          'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${BootstrapCheckDocument}',
          'arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:document/${RestartDocument}',
          'arn:${AWS::Partition}:ssm:${AWS::Region}::document/AWS-RunPatchBaseline',
          'arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:instance/*',
        ].sort(),
      );
      const onInstances = sends.find((s) => JSON.stringify(s.Resource).includes(':instance/*'));
      expect(onInstances?.Condition?.StringEquals).toMatchObject({ 'ssm:resourceTag/app': 'fleetbot' });
      const shell = bySid({ Statement: statements }, 'NeverRunArbitraryShell');
      expect(shell.Effect).toBe('Deny');
      expect(JSON.stringify(shell.Resource)).toContain('document/AWS-RunShellScript');
    });
  });

  it('when the security group is declared, then it has no inbound rule and only HTTPS out', () => {
    const sg = resource(template, 'InstanceSecurityGroup').Properties;
    expect(sg.SecurityGroupIngress).toBeUndefined();
    const ingressResources = Object.values(template.Resources).filter(
      (r) => r.Type === 'AWS::EC2::SecurityGroupIngress',
    );
    expect(ingressResources).toEqual([]);
    const egress = sg.SecurityGroupEgress as { IpProtocol: string; FromPort: number; ToPort: number }[];
    expect(egress.map((e) => [e.IpProtocol, e.FromPort, e.ToPort])).toEqual([
      ['tcp', 443, 443],
      ['tcp', 443, 443],
    ]);
  });

  describe('SSM documents', () => {
    it('when a version is typed in chat, then the deploy document accepts only the version pattern and passes it as SSM_version', () => {
      const doc = documentContent(template, 'DeployDocument');
      expect(doc.schemaVersion).toBe('2.2');
      expect(doc.parameters?.version).toEqual({
        type: 'String',
        description: expect.any(String),
        allowedPattern: versionPattern,
        interpolationType: 'ENV_VAR',
      });
      const pattern = new RegExp(doc.parameters?.version?.allowedPattern ?? '$^');
      // openclaw, the default assistant, numbers its releases by date: 2026.9.6.
      for (const ok of ['v1.2.3', '1.2.3', '0.10.0-rc.1', 'v2.0.0-build-7', '2026.9.6', 'v2026.12.31-beta.1'])
        expect(pattern.test(ok), ok).toBe(true);
      for (const bad of ['1.2.3;reboot', '$(id)', '1.2', '01.2.3', '1.2.3\nx', '1.2.3-`id`', ' 1.2.3'])
        expect(pattern.test(bad), bad).toBe(false);
      // No {{ version }}: the value must never become part of the script text.
      expect(doc.mainSteps.flatMap((s) => s.inputs.runCommand).join('\n')).not.toContain('{{');
    });

    it('when shellcheck reads the three scripts at style level, then it reports nothing', async () => {
      for (const name of ['DeployDocument', 'BootstrapCheckDocument', 'RestartDocument']) {
        const file = join(scratch, `${name}.sh`);
        await writeFile(
          file,
          `${documentContent(template, name).mainSteps[0]?.inputs.runCommand.join('\n')}\n`,
        );
        const result = await run('shellcheck', ['-s', 'bash', '-S', 'style', file]).then(
          ({ stdout }) => ({ code: 0, stdout }),
          (error: { code?: number; stdout?: string }) => ({ code: error.code, stdout: error.stdout }),
        );
        expect(result, name).toEqual({ code: 0, stdout: '' });
      }
    });

    it('when the deploy script runs, then the hook gets the version as one argument, and shell syntax or an old agent stop it', async () => {
      const doc = documentContent(template, 'DeployDocument');
      const dir = await mkdtemp(join(scratch, 'deploy-'));
      const hook = join(dir, 'deploy.sh');
      const calls = join(dir, 'calls');
      await writeFile(hook, `#!/bin/bash\nprintf '%s|%s\\n' "$#" "$1" >> '${calls}'\n`, { mode: 0o700 });
      const paths = { '/opt/fleetbot/deploy.sh': hook };

      const ok = await runDocument(doc, dir, paths, { SSM_version: 'v1.2.3-rc.1' });
      expect(ok.code).toBe(0);
      expect(await readFile(calls, 'utf8')).toBe('1|v1.2.3-rc.1\n');

      for (const bad of ['1.2.3; touch pwned', '$(touch pwned)', '1.2.3 4.5.6']) {
        const refused = await runDocument(doc, dir, paths, { SSM_version: bad });
        expect(refused, bad).toMatchObject({ code: 1, stdout: 'deploy: invalid version\n' });
      }
      const oldAgent = await runDocument(doc, dir, paths, {});
      expect(oldAgent.code).toBe(1);
      expect(oldAgent.stdout).toContain('SSM agent too old');
      expect(await readFile(calls, 'utf8')).toBe('1|v1.2.3-rc.1\n');
    });

    it('when the bootstrap finished, then the check prints the sentinel and succeeds', async () => {
      const doc = documentContent(template, 'BootstrapCheckDocument');
      const dir = await mkdtemp(join(scratch, 'done-'));
      await mkdir(join(dir, 'lib'));
      await writeFile(join(dir, 'lib', 'bootstrap-done'), 'finished=2026-01-01T00:00:00Z\ninstance=i-0abc\n');
      const paths = {
        '/var/lib/fleetbot': join(dir, 'lib'),
        '/var/log/fleetbot-bootstrap.log': join(dir, 'log'),
      };
      const result = await runDocument(doc, dir, paths, {});
      expect(result).toEqual({
        code: 0,
        stdout: 'bootstrap: done\nfinished=2026-01-01T00:00:00Z\ninstance=i-0abc\n',
        stderr: '',
      });
    });

    it('when the unit is not active, then the check adds its state and the secrets status line, masked, and an active one adds nothing', async () => {
      const doc = documentContent(template, 'BootstrapCheckDocument');
      expect(doc.parameters?.service).toMatchObject({
        allowedPattern: servicePattern,
        interpolationType: 'ENV_VAR',
        default: { Ref: 'ServiceName' },
      });
      const dir = await mkdtemp(join(scratch, 'check-unit-'));
      await mkdir(join(dir, 'lib'));
      await mkdir(join(dir, 'run'));
      await writeFile(join(dir, 'lib', 'bootstrap-done'), 'finished=2026-01-01T00:00:00Z\ninstance=i-0abc\n');
      const bin = await fakeSystemctl(dir);
      const paths = {
        '/var/lib/fleetbot': join(dir, 'lib'),
        '/var/log/fleetbot-bootstrap.log': join(dir, 'log'),
        '/run/fleetbot': join(dir, 'run'),
      };
      const env = { SSM_service: 'assistant', PATH: `${bin}:${process.env.PATH}` };

      const active = await runDocument(doc, dir, paths, { ...env, FAKE_STATE: 'active' });
      expect(active).toMatchObject({
        code: 0,
        stdout: 'bootstrap: done\nfinished=2026-01-01T00:00:00Z\ninstance=i-0abc\n',
      });

      const line = `fleetbot-secrets: failed: openai-api-key is not stored (ParameterNotFound) near sk-${'x'.repeat(20)}`;
      await writeFile(join(dir, 'run', 'assistant.status'), `${line}\n`);
      const failed = await runDocument(doc, dir, paths, { ...env, FAKE_STATE: 'failed' });
      expect(failed.code).toBe(0);
      expect(failed.stdout.split('\n').slice(3)).toEqual([
        'service: assistant is failed',
        'fleetbot-secrets: failed: openai-api-key is not stored (ParameterNotFound) near [redacted]',
        '',
      ]);

      // While the bootstrap is still running, the same report follows the log tail.
      await rm(join(dir, 'lib', 'bootstrap-done'));
      await writeFile(join(dir, 'log'), 'bootstrap: enabling and starting assistant.service\n');
      const pending = await runDocument(doc, dir, paths, { ...env, FAKE_STATE: 'activating' });
      await rm(join(dir, 'run', 'assistant.status'));
      const noStatus = await runDocument(doc, dir, paths, { ...env, FAKE_STATE: 'activating' });
      expect(pending.code).toBe(1);
      expect(pending.stdout.split('\n')).toEqual([
        'bootstrap: pending',
        'bootstrap: enabling and starting assistant.service',
        'service: assistant is activating',
        'fleetbot-secrets: failed: openai-api-key is not stored (ParameterNotFound) near [redacted]',
        '',
      ]);
      expect(noStatus.stdout.split('\n').slice(-2)).toEqual([
        `service: no ${join(dir, 'run')}/assistant.status`,
        '',
      ]);
    });

    it('when the bootstrap has not finished, then the check fails with the last 40 log lines, secrets masked, and says whether it gave up', async () => {
      const doc = documentContent(template, 'BootstrapCheckDocument');
      const dir = await mkdtemp(join(scratch, 'pending-'));
      const log = join(dir, 'log');
      const paths = { '/var/lib/fleetbot': join(dir, 'lib'), '/var/log/fleetbot-bootstrap.log': log };
      const token = `12345678:${'A'.repeat(35)}`;
      const key = `sk-proj-${'b'.repeat(40)}`;
      const lines = Array.from({ length: 50 }, (_, i) => `bootstrap: step ${i + 1}`);
      lines[45] = `leaked ${token} and ${key}`;
      await writeFile(log, `${lines.join('\n')}\n`);

      const pending = await runDocument(doc, dir, paths, {});
      expect(pending.code).toBe(1);
      const out = pending.stdout.trimEnd().split('\n');
      expect(out[0]).toBe('bootstrap: pending');
      expect(out).toHaveLength(41);
      expect(out[1]).toBe('bootstrap: step 11');
      expect(out.at(-1)).toBe('bootstrap: step 50');
      expect(pending.stdout).not.toContain(token);
      expect(pending.stdout).not.toContain(key);
      expect(out[36]).toBe('leaked [redacted] and [redacted]');

      await writeFile(
        log,
        `${lines.join('\n')}\nbootstrap: failed: reading /fleetbot/users/1/x failed (exit 1)\n`,
      );
      const failed = await runDocument(doc, dir, paths, {});
      expect(failed.code).toBe(1);
      // The provision job stops waiting on exactly this (src/jobs/provision.ts).
      expect(failed.stdout.split('\n')[0]).toBe('bootstrap: failed');

      const fresh = await mkdtemp(join(scratch, 'nolog-'));
      const noLog = await runDocument(
        doc,
        fresh,
        { '/var/lib/fleetbot': join(fresh, 'lib'), '/var/log/fleetbot-bootstrap.log': join(fresh, 'log') },
        {},
      );
      expect(noLog).toMatchObject({ code: 1, stdout: `bootstrap: pending\nno ${join(fresh, 'log')} yet\n` });
    });

    it('when a service is restarted, then only a unit-name-shaped value reaches systemctl, as one argument', async () => {
      const doc = documentContent(template, 'RestartDocument');
      expect(doc.parameters?.service).toMatchObject({
        allowedPattern: servicePattern,
        interpolationType: 'ENV_VAR',
        default: { Ref: 'ServiceName' },
      });
      const pattern = new RegExp(servicePattern);
      expect(['assistant', 'openclaw@main.service'].every((s) => pattern.test(s))).toBe(true);
      expect(['assistant; reboot', '-assistant', 'Assistant', '$(id)', ''].some((s) => pattern.test(s))).toBe(
        false,
      );

      const dir = await mkdtemp(join(scratch, 'restart-'));
      await mkdir(join(dir, 'run'));
      await writeFile(join(dir, 'run', 'assistant.status'), 'fleetbot-secrets: ok 2026-01-01T00:00:00Z\n');
      const bin = await fakeSystemctl(dir);
      const result = await runDocument(
        doc,
        dir,
        { '/run/fleetbot': join(dir, 'run') },
        { SSM_service: 'assistant', PATH: `${bin}:${process.env.PATH}`, FAKE_STATE: 'active' },
      );
      expect(result).toEqual({
        code: 0,
        stdout: 'restart: assistant is active\nfleetbot-secrets: ok 2026-01-01T00:00:00Z\n',
        stderr: '',
      });
      expect(await readFile(join(dir, 'calls'), 'utf8')).toBe(
        'reset-failed -- assistant \nrestart -- assistant \nis-active -- assistant \n',
      );

      const oldAgent = await runDocument(doc, dir, { '/run/fleetbot': join(dir, 'run') }, {});
      expect(oldAgent).toMatchObject({
        code: 1,
        stdout: 'restart: SSM agent too old (needs >= 3.3.2746.0)\n',
      });
    });

    it('when the restarted unit fails because a secret is gone, then the output says so first, with the secrets status line, masked', async () => {
      const doc = documentContent(template, 'RestartDocument');
      const dir = await mkdtemp(join(scratch, 'restart-failed-'));
      await mkdir(join(dir, 'run'));
      const line = 'fleetbot-secrets: failed: openai-api-key is not stored (ParameterNotFound)';
      await writeFile(join(dir, 'run', 'assistant.status'), `${line}\n`);
      const bin = await fakeSystemctl(dir);
      const token = `12345678:${'A'.repeat(35)}`;
      const env = {
        SSM_service: 'assistant.service',
        PATH: `${bin}:${process.env.PATH}`,
        FAKE_STATE: 'failed',
        FAKE_RESTART_SAYS: `Job for assistant.service failed because the control process exited with error code. ${token}`,
      };
      const result = await runDocument(doc, dir, { '/run/fleetbot': join(dir, 'run') }, env);
      expect(result).toEqual({
        code: 1,
        stdout: [
          'restart: failed: assistant.service is failed',
          line,
          'Job for assistant.service failed because the control process exited with error code. [redacted]',
          '',
        ].join('\n'),
        stderr: '',
      });

      await rm(join(dir, 'run', 'assistant.status'));
      const noStatus = await runDocument(doc, dir, { '/run/fleetbot': join(dir, 'run') }, env);
      expect(noStatus.stdout.split('\n')[1]).toBe(`restart: no ${join(dir, 'run')}/assistant.status`);
    });
  });
});

/**
 * systemctl as the documents use it: calls recorded, `is-active` answers $FAKE_STATE (exit 0 only when
 * active), `restart` fails with $FAKE_RESTART_SAYS on stderr when the state is not active.
 */
async function fakeSystemctl(dir: string): Promise<string> {
  const bin = join(dir, 'bin');
  await mkdir(bin);
  const calls = join(dir, 'calls');
  await writeFile(
    join(bin, 'systemctl'),
    [
      '#!/bin/bash',
      `printf '%s ' "$@" >> '${calls}'`,
      `echo >> '${calls}'`,
      'state="${FAKE_STATE:-active}"',
      'case "$1" in',
      '  is-active) echo "$state"; [ "$state" = active ] ;;',
      '  restart) if [ "$state" != active ]; then echo "${FAKE_RESTART_SAYS:-}" >&2; exit 1; fi ;;',
      'esac',
      '',
    ].join('\n'),
  );
  await chmod(join(bin, 'systemctl'), 0o700);
  return bin;
}

interface Deployed extends Stack {
  accountId: string;
  prefix: string;
  vpcId: string;
  moto: Moto;
  ec2: Moto['ec2'];
  ssm: Moto['ssm'];
}

/** A fresh account with a VPC and subnet, then the template through moto's CloudFormation. */
async function deploy(extra: Record<string, string> = {}, intoAccount?: string): Promise<Deployed> {
  const accountId = intoAccount ?? testAccountId();
  const moto = motoAccount(accountId);
  const { ec2, ssm } = moto;
  const vpc = await ec2.send(new CreateVpcCommand({ CidrBlock: '10.20.0.0/16' }));
  const vpcId = vpc.Vpc?.VpcId ?? '';
  const subnet = await ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: '10.20.1.0/24' }));
  // Not the default: the names must follow Prefix everywhere.
  const prefix = extra.Prefix ?? `fbt${accountId.slice(-6)}`;
  const parameters: Record<string, string> = {
    Prefix: prefix,
    Env: 'test',
    VpcId: vpcId,
    SubnetId: subnet.Subnet?.SubnetId ?? '',
    AmiId: 'ami-12c6146b',
    ...extra,
  };
  const stack = await createStack(
    moto,
    `fleetbot-${prefix}`,
    await readFile(templatePath, 'utf8'),
    parameters,
  );
  return { ...stack, accountId, prefix, vpcId, moto, ec2, ssm };
}

describe('infra/fleetbot.yaml deployed into moto through CloudFormation', () => {
  let stack: Deployed;

  beforeAll(async () => {
    stack = await deploy();
  }, 120_000);
  afterAll(() => {
    stack?.moto.destroy();
  });

  it('when the stack is created, then it completes with every output named after the prefix', () => {
    const { prefix, accountId } = stack;
    expect(stack.status).toBe('CREATE_COMPLETE');
    expect(stack.outputs).toEqual({
      InstanceRoleArn: `arn:aws:iam::${accountId}:role/${prefix}-${region}-instance`,
      InstanceProfileName: `${prefix}-${region}-instance`,
      BotRoleArn: `arn:aws:iam::${accountId}:role/${prefix}-${region}-bot`,
      WorkerRoleArn: `arn:aws:iam::${accountId}:role/${prefix}-${region}-worker`,
      SecurityGroupId: expect.stringMatching(/^sg-/),
      LaunchTemplateName: `${prefix}-instance`,
      LaunchTemplateId: expect.stringMatching(/^lt-/),
      KmsKeyArn: expect.stringMatching(new RegExp(`^arn:aws:kms:${region}:${accountId}:key/`)),
      KmsKeyAlias: `alias/${prefix}-secrets`,
      DeployDocumentName: `${prefix}-deploy`,
      BootstrapCheckDocumentName: `${prefix}-bootstrap-check`,
      RestartDocumentName: `${prefix}-restart-service`,
      RolloutEventsQueueUrl: expect.stringMatching(
        new RegExp(`^https://sqs\\.${region}\\.amazonaws\\.com/${accountId}/`),
      ),
      RolloutEventsQueueArn: expect.stringMatching(new RegExp(`^arn:aws:sqs:${region}:${accountId}:`)),
      RolloutEventsDeadLetterQueueUrl: expect.stringMatching(
        new RegExp(`^https://sqs\\.${region}\\.amazonaws\\.com/${accountId}/`),
      ),
      RolloutEventsDeadLetterQueueArn: expect.stringMatching(
        new RegExp(`^arn:aws:sqs:${region}:${accountId}:`),
      ),
      SecretBinderFunctionName: `${prefix}-secret-binder`,
      SessionOperatorPolicyArn: `arn:aws:iam::${accountId}:policy/${prefix}-test-session-operator`,
      SessionLogBucketName: expect.any(String),
      SessionLogGroupName: `/${prefix}/test/sessions`,
      SessionsKeyArn: expect.stringMatching(new RegExp(`^arn:aws:kms:${region}:${accountId}:key/`)),
    });
  });

  it('when the security group is described, then it sits in the VPC with zero ingress rules', async () => {
    const res = await stack.ec2.send(
      new DescribeSecurityGroupsCommand({ GroupIds: [stack.outputs.SecurityGroupId ?? ''] }),
    );
    const [group] = res.SecurityGroups ?? [];
    expect(group?.VpcId).toBe(stack.vpcId);
    expect(group?.IpPermissions).toEqual([]);
  });

  it('when the launch template is described, then it requires IMDSv2 with hop limit 1 and launches with our profile, group and tags', async () => {
    const res = await stack.ec2.send(
      new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateName: stack.outputs.LaunchTemplateName }),
    );
    const [version] = res.LaunchTemplateVersions ?? [];
    expect(version?.LaunchTemplateId).toBe(stack.outputs.LaunchTemplateId);
    const data = version?.LaunchTemplateData;
    expect(data?.MetadataOptions).toEqual({
      HttpTokens: 'required',
      HttpPutResponseHopLimit: 1,
      HttpEndpoint: 'enabled',
      InstanceMetadataTags: 'disabled',
    });
    expect(data?.ImageId).toBe('ami-12c6146b');
    expect(data?.InstanceType).toBe('t3.small');
    expect(data?.SecurityGroupIds).toEqual([stack.outputs.SecurityGroupId]);
    expect(data?.IamInstanceProfile?.Arn).toBe(
      `arn:aws:iam::${stack.accountId}:instance-profile/${stack.outputs.InstanceProfileName}`,
    );
    expect(data?.BlockDeviceMappings?.[0]?.Ebs).toMatchObject({ Encrypted: true, DeleteOnTermination: true });
    const fleetTags = [
      { Key: 'app', Value: 'fleetbot' },
      { Key: 'env', Value: 'test' },
      { Key: 'managed-by', Value: 'fleetbot' },
    ];
    expect(data?.TagSpecifications).toEqual([
      { ResourceType: 'instance', Tags: fleetTags },
      { ResourceType: 'volume', Tags: fleetTags },
    ]);
  });

  it('when fleetbot is configured with the stack outputs, then it launches from its template, stores secrets under its key and runs its documents', async () => {
    const { outputs } = stack;
    const fleet = createFleet(stack.ec2, {
      region,
      env: 'test',
      launchTemplate: outputs.LaunchTemplateName,
      instanceType: 't3.small',
    });
    const launched = await fleet.launch({
      userId: '4242',
      clientToken: 'infra-4242',
      userDataBase64: Buffer.from('#!/bin/bash\n').toString('base64'),
      version: 'v1.2.3',
    });
    const described = await stack.ec2.send(new DescribeInstancesCommand({ InstanceIds: [launched.id] }));
    const instance = described.Reservations?.[0]?.Instances?.[0];
    expect(instance?.ImageId).toBe('ami-12c6146b');
    expect(instance?.InstanceType).toBe('t3.small');
    expect(instance?.MetadataOptions?.HttpTokens).toBe('required');
    expect(instance?.SecurityGroups?.map((g) => g.GroupId)).toEqual([outputs.SecurityGroupId]);
    expect(await fleet.findForUser('4242')).toMatchObject({ id: launched.id, version: 'v1.2.3' });

    const secrets = createSecretStore(stack.ssm, {
      prefix: stack.prefix,
      kmsKeyId: outputs.KmsKeyAlias ?? '',
    });
    await secrets.put('4242', 'openai-api-key', `sk-${'c'.repeat(40)}`);
    await secrets.bindToInstance('4242', ['openai-api-key'], launched.arn);
    const parameters = await stack.ssm.send(
      new DescribeParametersCommand({
        ParameterFilters: [{ Key: 'Name', Values: [`/${stack.prefix}/users/4242/openai-api-key`] }],
      }),
    );
    expect(parameters.Parameters?.[0]).toMatchObject({ Type: 'SecureString', KeyId: outputs.KmsKeyAlias });

    const runCommand = createRunCommand(stack.ssm);
    const commandId = await runCommand.send(
      [launched.id],
      outputs.DeployDocumentName ?? '',
      { version: ['v1.2.4'] },
      'infra:1',
    );
    const sent = await stack.ssm.send(new ListCommandsCommand({ CommandId: commandId }));
    expect(sent.Commands?.[0]).toMatchObject({
      DocumentName: outputs.DeployDocumentName,
      Parameters: { version: ['v1.2.4'] },
      InstanceIds: [launched.id],
    });
  });

  it('when the documents are listed and read, then the three Command 2.2 documents and the session preferences exist and the patterns survived CloudFormation', async () => {
    const listed = await stack.ssm.send(
      new ListDocumentsCommand({ Filters: [{ Key: 'Owner', Values: ['Self'] }] }),
    );
    expect(
      (listed.DocumentIdentifiers ?? []).map((d) => [d.Name, d.DocumentType, d.SchemaVersion]).sort(),
    ).toEqual([
      ['SSM-SessionManagerRunShell', 'Session', '1.0'],
      [stack.outputs.BootstrapCheckDocumentName, 'Command', '2.2'],
      [stack.outputs.DeployDocumentName, 'Command', '2.2'],
      [stack.outputs.RestartDocumentName, 'Command', '2.2'],
    ]);
    const read = async (name: string | undefined): Promise<DocumentContent> => {
      const got = await stack.moto.json('ssm', 'AmazonSSM.GetDocument', { Name: name });
      // AWS returns Content as a JSON string; moto returns the object CloudFormation gave it.
      return (typeof got.Content === 'string' ? JSON.parse(got.Content) : got.Content) as DocumentContent;
    };
    const deployDoc = await read(stack.outputs.DeployDocumentName);
    expect(deployDoc.parameters?.version).toMatchObject({
      allowedPattern: versionPattern,
      interpolationType: 'ENV_VAR',
    });
    const restartDoc = await read(stack.outputs.RestartDocumentName);
    expect(restartDoc.parameters?.service).toMatchObject({
      allowedPattern: servicePattern,
      default: 'assistant',
    });
    const checkDoc = await read(stack.outputs.BootstrapCheckDocumentName);
    expect(checkDoc.parameters?.service).toMatchObject({
      allowedPattern: servicePattern,
      default: 'assistant',
    });
  });

  it('when IAM is asked, then the profile holds the instance role and its policy kept the ABAC variable unresolved', async () => {
    const profile = await stack.moto.query('iam', 'GetInstanceProfile', {
      InstanceProfileName: stack.outputs.InstanceProfileName ?? '',
    });
    const { Roles } = profile.InstanceProfile as { Roles: unknown };
    expect(listOf<{ RoleName: string }>(Roles).map((r) => r.RoleName)).toEqual([
      `${stack.prefix}-${region}-instance`,
    ]);

    const policy = await inlinePolicyOf(stack.moto, `${stack.prefix}-${region}-instance`, 'own-secrets-only');
    const allow = bySid(policy, 'ReadOwnUserSecretsOnly');
    expect(allow.Resource).toBe(`arn:aws:ssm:${region}:${stack.accountId}:parameter/${stack.prefix}/users/*`);
    expect(allow.Condition?.StringEquals).toEqual({
      'ssm:resourceTag/InstanceArn': '${ec2:SourceInstanceARN}',
    });
    expect(bySid(policy, 'DecryptUserSecretsViaSsm').Resource).toBe(stack.outputs.KmsKeyArn);

    const trustDoc = await trustPolicyOf(stack.moto, `${stack.prefix}-${region}-bot`);
    expect(trustDoc.Statement).toEqual([
      {
        Effect: 'Allow',
        Principal: { Service: 'ecs-tasks.amazonaws.com' },
        Action: 'sts:AssumeRole',
        Condition: { StringEquals: { 'aws:SourceAccount': stack.accountId } },
      },
    ]);
  });

  it('when KMS is asked, then the alias names the key, rotation is on and the key policy names both roles', async () => {
    const aliases = (await stack.moto.json('kms', 'TrentService.ListAliases', {})).Aliases as {
      AliasName: string;
      TargetKeyId?: string;
    }[];
    const alias = aliases.find((a) => a.AliasName === stack.outputs.KmsKeyAlias);
    expect(alias?.TargetKeyId).toBeDefined();
    expect(stack.outputs.KmsKeyArn).toBe(
      `arn:aws:kms:${region}:${stack.accountId}:key/${alias?.TargetKeyId}`,
    );
    const rotation = await stack.moto.json('kms', 'TrentService.GetKeyRotationStatus', {
      KeyId: alias?.TargetKeyId,
    });
    expect(rotation.KeyRotationEnabled).toBe(true);
    const { Policy } = await stack.moto.json('kms', 'TrentService.GetKeyPolicy', {
      KeyId: alias?.TargetKeyId,
      PolicyName: 'default',
    });
    // AWS returns the policy as a JSON string; moto returns the object CloudFormation gave it.
    const keyPolicy = (typeof Policy === 'string' ? JSON.parse(Policy) : Policy) as PolicyDocument;
    expect(bySid(keyPolicy, 'ServiceEncryptsViaSsm').Principal).toEqual({ AWS: stack.outputs.BotRoleArn });
    expect(bySid(keyPolicy, 'InstancesDecryptViaSsm').Principal).toEqual({
      AWS: stack.outputs.InstanceRoleArn,
    });
  });

  it("when the session preferences are read back, then shells are logged to the stack's bucket and group, encrypted, time-limited and not root", async () => {
    const got = await stack.moto.json('ssm', 'AmazonSSM.GetDocument', { Name: 'SSM-SessionManagerRunShell' });
    const content = (typeof got.Content === 'string' ? JSON.parse(got.Content) : got.Content) as {
      sessionType: string;
      inputs: Record<string, unknown>;
    };
    expect(got.DocumentType).toBe('Session');
    expect(content.sessionType).toBe('Standard_Stream');
    expect(content.inputs).toMatchObject({
      s3BucketName: stack.outputs.SessionLogBucketName,
      s3EncryptionEnabled: true,
      cloudWatchLogGroupName: stack.outputs.SessionLogGroupName,
      cloudWatchEncryptionEnabled: true,
      kmsKeyId: stack.outputs.SessionsKeyArn,
      runAsEnabled: true,
      runAsDefaultUser: 'ec2-user',
      idleSessionTimeout: '20',
      maxSessionDuration: '60',
    });
    const policy = await stack.moto.query('iam', 'GetPolicy', {
      PolicyArn: stack.outputs.SessionOperatorPolicyArn ?? '',
    });
    expect((policy.Policy as { PolicyName: string }).PolicyName).toBe(
      `${stack.prefix}-test-session-operator`,
    );
  });

  it('when a second stack goes into the same account and region, then only CreateSessionPreferences=false lets it complete', async () => {
    // SSM-SessionManagerRunShell is one per account and region: a second stack creating it fails.
    // moto refuses the CreateStack call itself; CloudFormation would roll the stack back.
    await expect(deploy({ Prefix: `${stack.prefix}b` }, stack.accountId)).rejects.toThrow(
      /DocumentAlreadyExists/,
    );
    const second = await deploy(
      { Prefix: `${stack.prefix}c`, CreateSessionPreferences: 'false' },
      stack.accountId,
    );
    expect(second.status).toBe('CREATE_COMPLETE');
    expect(
      Object.keys(second.outputs)
        .filter((k) => k.startsWith('Session'))
        .sort(),
    ).toEqual(['SessionOperatorPolicyArn']);
    second.moto.destroy();
  }, 120_000);

  it('when the service runs on EC2 instead of ECS, then the bot role trusts EC2 and gets its own instance profile', async () => {
    const onEc2 = await deploy({ BotPrincipalService: 'ec2.amazonaws.com' });
    expect(onEc2.status).toBe('CREATE_COMPLETE');
    expect(onEc2.outputs.BotInstanceProfileName).toBe(`${onEc2.prefix}-${region}-bot`);
    const trustDoc = await trustPolicyOf(onEc2.moto, `${onEc2.prefix}-${region}-bot`);
    expect(trustDoc.Statement).toEqual([
      { Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' }, Action: 'sts:AssumeRole' },
    ]);
    expect(stack.outputs.BotInstanceProfileName).toBeUndefined();
    onEc2.moto.destroy();
  }, 120_000);
});
