import { EC2Client } from '@aws-sdk/client-ec2';
import type { FleetInstance } from '../../src/core/ports/fleet.js';
import type { AuditRecord } from '../../src/http/fleet-page.js';
import { testAccountId, withAccount } from '../peers/aws-account.js';

export const user = 'ops';
export const password = 'dashboard-test-password';
export const basic = (u = user, p = password) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

/** An EC2 client on moto, in an account of its own. */
export function motoEc2(motoUrl: string): EC2Client {
  return withAccount(
    new EC2Client({
      region: 'us-east-1',
      endpoint: motoUrl,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
      maxAttempts: 1,
    }),
    testAccountId(),
  );
}

const instance = (
  id: string,
  userId: string,
  state: FleetInstance['state'],
  version?: string,
): FleetInstance => ({
  id,
  arn: `arn:aws:ec2:us-east-1:123456789012:instance/${id}`,
  userId,
  state,
  version,
  launchedAt: new Date('2025-01-02T03:04:05Z'),
  env: 'dev',
  tags: { app: 'fleetbot', user: userId, env: 'dev', version },
});

export const instances: FleetInstance[] = [
  instance('i-0123456789abcdef0', '1001', 'running', '1.4.0'),
  instance('i-0123456789abcdef1', '1002', 'running', '1.4.0'),
  instance('i-0123456789abcdef2', '1003', 'stopped', '1.3.9'),
];

export const xss = '<img src=x onerror=alert(1)>';

export const audit: AuditRecord[] = [
  {
    at: '2025-01-02T03:04:05.000Z',
    platform: 'slack',
    actor: 'U123',
    command: 'deploy',
    args: `1.4.0 all ${xss}`,
    decision: 'allowed',
    jobId: 'rollout-abc12345',
    outcome: 'completed',
  },
  {
    at: '2025-01-02T03:00:00.000Z',
    platform: 'telegram',
    actor: '1003',
    command: 'fleet',
    args: '',
    decision: 'denied: admin only',
  },
];
