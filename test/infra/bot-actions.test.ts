import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { list, loadTemplate, type PolicyDocument, resource, type Template } from '../support/cfn-template.js';

/*
 * BotPolicy (and, for the rollout events queue, WorkerRolloutEventsPolicy) allows exactly the AWS calls fleetbot makes: every `new XxxCommand(` and `paginateXxx(`
 * imported from an @aws-sdk/client-* package under src/ is one IAM action, and every action the policy
 * allows is one of those calls, apart from the few AWS authorizes on the bot's behalf (below, each
 * with its reason). Add an SDK call without a policy entry, or leave an entry no code uses, and this
 * fails.
 */

const srcDir = fileURLToPath(new URL('../../src', import.meta.url));

/** @aws-sdk/client-<package> -> IAM service prefix. */
const servicePrefix: Record<string, string> = { ec2: 'ec2', ssm: 'ssm', lambda: 'lambda', sqs: 'sqs' };

/** Where the SDK command's name is not the IAM action's (a batch call is authorized as its single form). */
const actionOf: Record<string, string> = {
  'lambda:Invoke': 'lambda:InvokeFunction',
  'sqs:DeleteMessageBatch': 'sqs:DeleteMessage',
};

/** Only the worker receives rollout events: its own policy allows those calls, BotPolicy none. */
const workerOnly = (action: string) => action.startsWith('sqs:');

/** Allowed although fleetbot's code never calls them: AWS checks them on the bot's behalf. */
const authorizedOnTheBotsBehalf: Record<string, string> = {
  'kms:Encrypt': 'SSM encrypts a SecureString with SecretsKey when the bot calls PutParameter',
  'kms:GenerateDataKey':
    'SSM envelope-encrypts Advanced-tier SecureStrings (over 4 KB) with a data key from SecretsKey; fleetbot stores Standard tier today',
  'iam:PassRole': 'RunInstances passes the instance role through the launch template',
  'ec2:CreateTags': 'RunInstances tags the instance and its volume at launch (TagSpecifications)',
};

async function sourceFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((e) =>
      e.isDirectory()
        ? sourceFiles(join(dir, e.name))
        : Promise.resolve(e.name.endsWith('.ts') ? [join(dir, e.name)] : []),
    ),
  );
  return nested.flat();
}

/** The IAM actions one source file calls through the AWS SDK, with where. */
function sdkCallsIn(text: string): string[] {
  const imported = new Map<string, string>();
  for (const m of text.matchAll(
    /import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*'@aws-sdk\/client-([a-z0-9-]+)'/g,
  )) {
    const prefix = servicePrefix[m[2] ?? ''];
    if (!prefix) throw new Error(`no IAM service prefix known for @aws-sdk/client-${m[2]}`);
    for (const name of (m[1] ?? '').split(',')) {
      const clean = name
        .trim()
        .replace(/^type\s+/, '')
        .split(/\s+as\s+/)
        .pop();
      if (clean) imported.set(clean, prefix);
    }
  }
  const calls: string[] = [];
  for (const m of text.matchAll(
    /\bnew\s+([A-Z][A-Za-z0-9]*)Command\s*\(|\bpaginate([A-Z][A-Za-z0-9]*)\s*\(/g,
  )) {
    const operation = m[1] ?? m[2] ?? '';
    const identifier = m[1] ? `${m[1]}Command` : `paginate${m[2]}`;
    const prefix = imported.get(identifier);
    if (!prefix) continue; // not an AWS SDK command (or not imported from a client package)
    const action = `${prefix}:${operation}`;
    calls.push(actionOf[action] ?? action);
  }
  return calls;
}

function allowedActions(doc: PolicyDocument): string[] {
  return doc.Statement.filter((s) => s.Effect === 'Allow').flatMap((s) => list(s.Action) as string[]);
}

describe('BotPolicy against the AWS SDK calls in src/', () => {
  let template: Template;
  const called = new Map<string, string[]>();

  beforeAll(async () => {
    template = await loadTemplate();
    for (const file of await sourceFiles(srcDir))
      for (const action of sdkCallsIn(await readFile(file, 'utf8')))
        called.set(action, [...(called.get(action) ?? []), relative(srcDir, file)]);
  });

  it('when the scanner reads SDK code, then commands and paginators map to IAM actions and other classes do not', () => {
    const text = [
      "import { DescribeInstancesCommand, paginateDescribeInstances, type EC2Client } from '@aws-sdk/client-ec2';",
      "import { InvokeCommand } from '@aws-sdk/client-lambda';",
      "import { SomethingCommand } from '../core/commands.js';",
      'new DescribeInstancesCommand({}); paginateDescribeInstances({ client }, {});',
      'new InvokeCommand({}); new SomethingCommand();',
    ].join('\n');
    expect(sdkCallsIn(text)).toEqual([
      'ec2:DescribeInstances',
      'ec2:DescribeInstances',
      'lambda:InvokeFunction',
    ]);
  });

  it('when the policy is compared with the code, then it allows exactly the calls fleetbot makes plus the ones AWS makes on its behalf', () => {
    const allowed = allowedActions(
      resource(template, 'BotPolicy').Properties.PolicyDocument as PolicyDocument,
    );
    expect(
      allowed.filter((a) => a.includes('*') || a.includes('?')),
      'wildcard actions',
    ).toEqual([]);
    const expected = [...called.keys()]
      .filter((a) => !workerOnly(a))
      .concat(Object.keys(authorizedOnTheBotsBehalf));
    const missing = expected
      .filter((a) => !allowed.includes(a))
      .map((a) => `${a} (${called.get(a) ?? 'service'})`);
    const unused = allowed.filter((a) => !expected.includes(a));
    expect({ missing, unused }).toEqual({ missing: [], unused: [] });
    expect([...new Set(allowed)].sort()).toEqual([...new Set(expected)].sort());
  });

  it('when the worker policy is compared with the code, then it allows exactly the queue calls the event receiver makes', () => {
    const allowed = allowedActions(
      resource(template, 'WorkerRolloutEventsPolicy').Properties.PolicyDocument as PolicyDocument,
    ).filter(workerOnly);
    const expected = [...called.keys()].filter(workerOnly);
    expect(expected.length).toBeGreaterThan(0);
    expect([...new Set(allowed)].sort()).toEqual([...new Set(expected)].sort());
  });
});
