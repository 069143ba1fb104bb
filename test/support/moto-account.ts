import { EC2Client } from '@aws-sdk/client-ec2';
import { SSMClient } from '@aws-sdk/client-ssm';
import { inject } from 'vitest';
import { withAccount } from '../peers/aws-account.js';
import type { PolicyDocument } from './cfn-template.js';
import { listOf, resultOf } from './xml.js';

/*
 * moto over its wire protocols, as one account: the query APIs (form-encoded, XML answers), the
 * JSON ones (x-amz-target), the EC2 and SSM SDK clients, and CloudFormation stacks created through them.
 */

const region = 'us-east-1';

/** The Version each query API expects with its Action. */
const versions: Record<string, string> = {
  cloudformation: '2010-05-15',
  elasticache: '2015-02-02',
  elasticloadbalancing: '2015-12-01',
  iam: '2010-05-08',
};

export function motoAccount(accountId: string) {
  const url = inject('motoUrl');
  // Unsigned requests are routed to S3: moto picks the service from the credential scope and does not
  // verify the signature, so a placeholder Authorization header is enough.
  const headers = (service: string) => ({
    authorization: `AWS4-HMAC-SHA256 Credential=testing/20260101/${region}/${service}/aws4_request, SignedHeaders=host, Signature=0`,
    'x-moto-account-id': accountId,
  });
  const base = {
    region,
    endpoint: url,
    maxAttempts: 1,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  };
  return {
    accountId,
    ec2: withAccount(new EC2Client(base), accountId),
    ssm: withAccount(new SSMClient(base), accountId),
    /** A query API call as it is answered, refusals included. */
    async send(service: string, action: string, params: Record<string, string> = {}) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { ...headers(service), 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ Action: action, Version: versions[service] ?? '', ...params }),
      });
      return { status: res.status, text: await res.text() };
    },
    /** The `<Result>` of a query API's answer as plain data; anything but HTTP 200 throws with its error. */
    async query(service: string, action: string, params: Record<string, string> = {}) {
      const { status, text } = await this.send(service, action, params);
      if (status !== 200) throw new Error(`${service} ${action}: HTTP ${status} ${text.slice(0, 500)}`);
      return resultOf(text, action);
    },
    async json(service: string, target: string, body: object): Promise<Record<string, unknown>> {
      const res = await fetch(url, {
        method: 'POST',
        headers: {
          ...headers(service),
          'content-type': 'application/x-amz-json-1.1',
          'x-amz-target': target,
        },
        body: JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${target}: HTTP ${res.status} ${text.slice(0, 500)}`);
      return JSON.parse(text) as Record<string, unknown>;
    },
    destroy() {
      this.ec2.destroy();
      this.ssm.destroy();
    },
  };
}
export type Moto = ReturnType<typeof motoAccount>;

/** Generous: a stack that settles at all does so in well under a second when the machine is idle. */
export const stackSettlesWithinMs = 60_000;

export interface Stack {
  status: string;
  reason?: string | undefined;
  outputs: Record<string, string>;
  resources: {
    LogicalResourceId: string;
    ResourceType: string;
    ResourceStatus: string;
    PhysicalResourceId: string;
  }[];
}

/** CreateStack's parameters, with CAPABILITY_NAMED_IAM: the templates name their roles. */
export function createStackParams(name: string, body: string, parameters: Record<string, string>) {
  const request: Record<string, string> = {
    StackName: name,
    TemplateBody: body,
    'Capabilities.member.1': 'CAPABILITY_NAMED_IAM',
  };
  Object.entries(parameters).forEach(([key, value], i) => {
    request[`Parameters.member.${i + 1}.ParameterKey`] = key;
    request[`Parameters.member.${i + 1}.ParameterValue`] = value;
  });
  return request;
}

/**
 * Creates the stack and waits for it to settle. A refused CreateStack throws; a stack that fails or
 * does not settle in time is returned with the status it has.
 */
export async function createStack(
  moto: Moto,
  name: string,
  body: string,
  parameters: Record<string, string>,
): Promise<Stack> {
  await moto.query('cloudformation', 'CreateStack', createStackParams(name, body, parameters));
  // Until the stack leaves *_IN_PROGRESS, by a deadline rather than a count of polls: how many polls
  // fit into the time moto needs depends on the machine's load.
  const deadline = Date.now() + stackSettlesWithinMs;
  let stack: Record<string, unknown> = {};
  for (;;) {
    const described = await moto.query('cloudformation', 'DescribeStacks', { StackName: name });
    stack = listOf<Record<string, unknown>>(described.Stacks)[0] ?? {};
    if (!String(stack.StackStatus).endsWith('_IN_PROGRESS') || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const outputs = Object.fromEntries(
    listOf<{ OutputKey: string; OutputValue: string }>(stack.Outputs).map((o) => [
      o.OutputKey,
      o.OutputValue,
    ]),
  );
  const listed = await moto.query('cloudformation', 'ListStackResources', { StackName: name });
  return {
    status: String(stack.StackStatus),
    reason: stack.StackStatusReason === undefined ? undefined : String(stack.StackStatusReason),
    outputs,
    resources: listOf(listed.StackResourceSummaries),
  };
}

// IAM keeps policy documents URL-encoded in its answers.
const policyDocument = (encoded: unknown) =>
  JSON.parse(decodeURIComponent(String(encoded))) as PolicyDocument;

/** Who may assume the role, as IAM holds it. */
export async function trustPolicyOf(moto: Moto, roleName: string): Promise<PolicyDocument> {
  const { Role } = await moto.query('iam', 'GetRole', { RoleName: roleName });
  return policyDocument((Role as { AssumeRolePolicyDocument: string }).AssumeRolePolicyDocument);
}

/** One of the role's inline policies, as IAM holds it. */
export async function inlinePolicyOf(
  moto: Moto,
  roleName: string,
  policyName: string,
): Promise<PolicyDocument> {
  const got = await moto.query('iam', 'GetRolePolicy', { RoleName: roleName, PolicyName: policyName });
  return policyDocument(got.PolicyDocument);
}
