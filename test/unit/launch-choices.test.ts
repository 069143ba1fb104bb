import { describe, expect, it } from 'vitest';
import { launchClientToken, notFoundInstanceIds, placements } from '../../src/aws/fleet.js';
import { ConfigError, loadConfig } from '../../src/config.js';

/** The pure parts of launching on real AWS: placements, ClientTokens, EC2's not-found messages, config. */

const minimal = {
  AWS_REGION: 'eu-west-1',
  TELEGRAM_BOT_TOKEN: `123456789:${'A'.repeat(35)}`,
  DASHBOARD_PASSWORD: 'launch-dashboard-password',
};

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...minimal, ...env });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('placements', () => {
  it('when several types and subnets are configured, then every subnet is tried with the first type before the next type', () => {
    expect(
      placements({
        region: 'r',
        env: 'dev',
        instanceType: 't3.small',
        instanceTypes: ['t3.small', 't3a.small'],
        subnetIds: ['subnet-aaaaaaaa', 'subnet-bbbbbbbb'],
      }),
    ).toEqual([
      { instanceType: 't3.small', subnetId: 'subnet-aaaaaaaa' },
      { instanceType: 't3.small', subnetId: 'subnet-bbbbbbbb' },
      { instanceType: 't3a.small', subnetId: 'subnet-aaaaaaaa' },
      { instanceType: 't3a.small', subnetId: 'subnet-bbbbbbbb' },
    ]);
  });

  it('when only the single-value settings are given, then there is exactly one placement', () => {
    expect(placements({ region: 'r', env: 'dev', instanceType: 't3.small' })).toEqual([
      { instanceType: 't3.small' },
    ]);
    expect(
      placements({ region: 'r', env: 'dev', instanceType: 't3.small', subnetId: 'subnet-aaaaaaaa' }),
    ).toEqual([{ instanceType: 't3.small', subnetId: 'subnet-aaaaaaaa' }]);
  });

  it('when a launch template is used, then only the subnets vary (the template decides the type)', () => {
    expect(
      placements({
        region: 'r',
        env: 'dev',
        launchTemplate: 'lt',
        instanceType: 't3.small',
        instanceTypes: ['t3.small', 't3a.small'],
        subnetIds: ['subnet-aaaaaaaa', 'subnet-bbbbbbbb'],
      }),
    ).toEqual([{ subnetId: 'subnet-aaaaaaaa' }, { subnetId: 'subnet-bbbbbbbb' }]);
  });
});

describe('launchClientToken', () => {
  const base = 'fleetbot-provision-9001-1716480000000';

  it('when the same job asks again for the same placement, then the token is the same', () => {
    const placement = { instanceType: 't3.small', subnetId: 'subnet-aaaaaaaa' };
    expect(launchClientToken(base, placement)).toBe(launchClientToken(base, { ...placement }));
    expect(launchClientToken(base, placement).startsWith(`${base}-`)).toBe(true);
  });

  it('when the type, the subnet or the job differs, then the token differs', () => {
    const tokens = new Set([
      launchClientToken(base, { instanceType: 't3.small', subnetId: 'subnet-aaaaaaaa' }),
      launchClientToken(base, { instanceType: 't3a.small', subnetId: 'subnet-aaaaaaaa' }),
      launchClientToken(base, { instanceType: 't3.small', subnetId: 'subnet-bbbbbbbb' }),
      launchClientToken(base, { instanceType: 't3.small' }),
      launchClientToken(`${base}1`, { instanceType: 't3.small', subnetId: 'subnet-aaaaaaaa' }),
    ]);
    expect(tokens.size).toBe(5);
  });

  it('when the base is long, then the token stays within 64 ASCII characters and still tells jobs apart', () => {
    const long = `fleetbot-${'x'.repeat(80)}`;
    const a = launchClientToken(`${long}-1`, { instanceType: 't3.small' });
    const b = launchClientToken(`${long}-2`, { instanceType: 't3.small' });
    expect(a.length).toBeLessThanOrEqual(64);
    expect(a).toMatch(/^[\x21-\x7e]+$/);
    expect(a).not.toBe(b);
  });
});

describe('notFoundInstanceIds', () => {
  it('when EC2 names one or several ids that do not exist yet, then exactly those ids are read from its message', () => {
    expect(notFoundInstanceIds("The instance ID 'i-0123456789abcdef0' does not exist")).toEqual([
      'i-0123456789abcdef0',
    ]);
    expect(notFoundInstanceIds("The instance IDs 'i-0123456789abcdef0, i-12345678' do not exist")).toEqual([
      'i-0123456789abcdef0',
      'i-12345678',
    ]);
  });

  it('when the message names no id, then none is read', () => {
    expect(notFoundInstanceIds('Injected error')).toEqual([]);
    expect(notFoundInstanceIds('')).toEqual([]);
  });
});

describe('INSTANCE_TYPE and INSTANCE_SUBNET_ID', () => {
  it('when one type is given, as before, then it is the only choice', () => {
    const config = loadConfig({ ...minimal, INSTANCE_TYPE: 't3.medium' });
    expect(config.instances.instanceType).toBe('t3.medium');
    expect(config.instances.instanceTypes).toEqual(['t3.medium']);
    expect(config.instances.subnetIds).toEqual([]);
    expect(config.instances.profileWaitMs).toBe(120_000);
  });

  it('when nothing is given, then t3.small in the default subnet', () => {
    const config = loadConfig(minimal);
    expect(config.instances.instanceTypes).toEqual(['t3.small']);
    expect(config.instances.subnetId).toBeUndefined();
  });

  it('when lists are given, then their order is kept', () => {
    const config = loadConfig({
      ...minimal,
      INSTANCE_TYPE: ' t3.small , t3a.small,m7g.medium ',
      INSTANCE_SUBNET_ID: 'subnet-0123456789abcdef0,subnet-aaaaaaaa',
      INSTANCE_PROFILE_WAIT_SECONDS: '30',
    });
    expect(config.instances.instanceTypes).toEqual(['t3.small', 't3a.small', 'm7g.medium']);
    expect(config.instances.instanceType).toBe('t3.small');
    expect(config.instances.subnetIds).toEqual(['subnet-0123456789abcdef0', 'subnet-aaaaaaaa']);
    expect(config.instances.subnetId).toBe('subnet-0123456789abcdef0');
    expect(config.instances.profileWaitMs).toBe(30_000);
  });

  it('when an entry is malformed or repeated, then the key is named with the reason and never the value', () => {
    const canary = 'CANARYtype';
    const problems = problemsOf({
      INSTANCE_TYPE: `t3.small,${canary}`,
      INSTANCE_SUBNET_ID: 'subnet-aaaaaaaa,subnet-aaaaaaaa',
      INSTANCE_PROFILE_WAIT_SECONDS: '-1',
    });
    expect(problems.join('\n')).not.toContain(canary);
    expect(problems).toContainEqual(
      expect.stringMatching(/^INSTANCE_TYPE: must be instance types such as t3\.small/),
    );
    expect(problems).toContainEqual('INSTANCE_SUBNET_ID: must not list a subnet twice');
    expect(problems).toContainEqual(expect.stringMatching(/^INSTANCE_PROFILE_WAIT_SECONDS: /));
    expect(problemsOf({ INSTANCE_SUBNET_ID: 'vpc-aaaaaaaa' })).toEqual([
      'INSTANCE_SUBNET_ID: must be subnet ids (subnet-…), separated by commas',
    ]);
  });
});
