import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const canary = 'CANARY-9f8e7d6c5b4a';
const minimal = {
  AWS_REGION: 'eu-west-1',
  TELEGRAM_BOT_TOKEN: `123456789:${'A'.repeat(35)}`,
  DASHBOARD_PASSWORD: 'config-dashboard-password',
};

function problemsOf(env: Record<string, string | undefined>, overrides = {}): string[] {
  try {
    loadConfig(env, overrides);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('loadConfig', () => {
  it('when every required key is missing, then one error lists them all by name', () => {
    let error: unknown;
    try {
      loadConfig({});
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as ConfigError).message;
    expect(message).toContain('AWS_REGION: is required');
    expect(message).toContain('TELEGRAM_BOT_TOKEN: is required (or SLACK_BOT_TOKEN)');
    expect(message).toContain('DASHBOARD_PASSWORD: is required');
    expect((error as ConfigError).problems).toHaveLength(3);
  });

  it('when values are bad, then the message names each key and never prints a value', () => {
    const env = {
      AWS_REGION: canary,
      TELEGRAM_BOT_TOKEN: canary,
      SLACK_BOT_TOKEN: canary,
      SLACK_ADMIN_USER_IDS: `U123,${canary}`,
      REDIS_URL: canary,
      LOG_LEVEL: canary,
      DASHBOARD_LISTEN: canary,
      DASHBOARD_PASSWORD: canary,
      AWS_ENDPOINT_URL: canary,
    };
    const problems = problemsOf(env);
    const keys = problems.map((p) => p.split(':')[0]);
    expect(keys).toEqual(
      expect.arrayContaining([
        'AWS_REGION',
        'TELEGRAM_BOT_TOKEN',
        'SLACK_BOT_TOKEN',
        'SLACK_ADMIN_USER_IDS',
        'REDIS_URL',
        'LOG_LEVEL',
        'DASHBOARD_LISTEN',
        'AWS_ENDPOINT_URL',
        'SLACK_SIGNING_SECRET',
      ]),
    );
    expect(problems.join('\n')).not.toContain('CANARY');
  });

  it('when Telegram runs as a webhook without url and secret, then both are reported', () => {
    const problems = problemsOf({ ...minimal, TELEGRAM_MODE: 'webhook' });
    expect(problems).toEqual([
      'TELEGRAM_WEBHOOK_URL: is required when TELEGRAM_MODE=webhook',
      'TELEGRAM_WEBHOOK_SECRET: is required when TELEGRAM_MODE=webhook',
    ]);
  });

  it('when only the worker role runs, then no chat token or dashboard password is needed', () => {
    const config = loadConfig({ AWS_REGION: 'eu-west-1' }, { roles: ['worker'] });
    expect(config.roles).toEqual(['worker']);
    expect(config.telegram).toBeUndefined();
    expect(config.access).toEqual({ telegramUserIds: [], slackAdminIds: [], slackChannelIds: [] });
  });

  it('when FLEETBOT_ROLE lists roles, then the process runs exactly those', () => {
    const config = loadConfig({
      AWS_REGION: 'eu-west-1',
      FLEETBOT_ROLE: 'worker, dashboard',
      DASHBOARD_PASSWORD: 'config-dashboard-password',
    });
    expect(config.roles).toEqual(['worker', 'dashboard']);
    expect(() => loadConfig({ AWS_REGION: 'eu-west-1', FLEETBOT_ROLE: 'worker,dashboard' })).toThrow(
      'DASHBOARD_PASSWORD: is required for the dashboard role',
    );
  });

  it('when FLEETBOT_ROLE names something else, then the error says which roles exist', () => {
    expect(() => loadConfig({ ...minimal, FLEETBOT_ROLE: 'worker,everything' })).toThrow(
      'FLEETBOT_ROLE: must be one or more of bot, worker, dashboard, all, separated by commas',
    );
  });

  it('when REDIS_URL lists several rediss:// seed nodes, then it is a TLS cluster with the password of the URL', () => {
    const config = loadConfig({
      ...minimal,
      REDIS_URL: 'rediss://:url-token@node-a.example:7000, rediss://node-b.example:7001',
      REDIS_PREFIX: '{fb}',
    });
    expect(config.redis).toMatchObject({
      nodes: [
        { host: 'node-a.example', port: 7000 },
        { host: 'node-b.example', port: 7001 },
      ],
      cluster: true,
      tls: true,
      password: 'url-token',
      prefix: '{fb}',
    });
  });

  it("when REDIS_CLUSTER=true names one configuration endpoint, then it is a cluster, and REDIS_PASSWORD wins over the URL's", () => {
    const config = loadConfig({
      ...minimal,
      REDIS_URL: 'rediss://default:url-token@clustercfg.fleetbot.example.cache.amazonaws.com:6379',
      REDIS_CLUSTER: 'true',
      REDIS_PASSWORD: 'injected-token',
      REDIS_TLS_CA_FILE: '/etc/fleetbot/redis-ca.pem',
    });
    expect(config.redis).toMatchObject({
      nodes: [{ host: 'clustercfg.fleetbot.example.cache.amazonaws.com', port: 6379 }],
      cluster: true,
      tls: true,
      username: 'default',
      password: 'injected-token',
      tlsCaFile: '/etc/fleetbot/redis-ca.pem',
    });
  });

  it('when a cluster is given a prefix without a hash tag, then the error says to add one', () => {
    expect(() =>
      loadConfig({
        ...minimal,
        REDIS_URL: 'redis://127.0.0.1:7000,redis://127.0.0.1:7001',
        REDIS_PREFIX: 'fb',
      }),
    ).toThrow('REDIS_PREFIX: must hold a hash tag on a Redis Cluster, such as {fb}');
    expect(() => loadConfig({ ...minimal, REDIS_PREFIX: 'a{b}c{d}' })).toThrow(
      'REDIS_PREFIX: must be A-Z a-z 0-9 _ - with at most one {hash tag}',
    );
  });

  it('when REDIS_URL mixes redis:// and rediss:// or is no Redis URL, then the error says what it takes and never echoes the URL', () => {
    for (const REDIS_URL of [
      `rediss://:${canary}@a:7000,redis://b:7001`,
      `http://:${canary}@a:7000`,
      `rediss://:${canary}@`,
    ]) {
      let message = '';
      try {
        loadConfig({ ...minimal, REDIS_URL });
      } catch (error) {
        message = String(error);
      }
      expect(message).toContain('REDIS_URL: must be a redis:// or rediss:// URL, or several');
      expect(message).not.toContain(canary);
    }
  });

  it('when a minimal config is given, then defaults fill the rest', () => {
    const config = loadConfig({ ...minimal, SLACK_ADMIN_USER_IDS: ' U123 , U456 ' });
    expect(config.roles).toEqual(['bot', 'worker', 'dashboard']);
    expect(config.redis).toEqual({
      nodes: [{ host: '127.0.0.1', port: 6379 }],
      cluster: false,
      tls: false,
      username: undefined,
      password: undefined,
      tlsCaFile: undefined,
      db: 0,
      // Hash-tagged by default, so the same keys work on one server and on a cluster.
      prefix: '{fleetbot}',
    });
    expect(config.aws).toEqual({
      region: 'eu-west-1',
      endpoint: undefined,
      parameterPrefix: 'fleetbot',
      kmsKeyId: 'alias/aws/ssm',
    });
    expect(config.telegram?.mode).toBe('polling');
    expect(config.dashboard).toMatchObject({ host: '127.0.0.1', port: 8080, user: 'ops' });
    expect(config.access.slackAdminIds).toEqual(['U123', 'U456']);
    expect(config.instances.instanceType).toBe('t3.small');
  });

  it('when the parameter prefix starts with a reserved word, then it is refused', () => {
    expect(problemsOf({ ...minimal, PARAMETER_PREFIX: 'ssm-things' })).toEqual([
      'PARAMETER_PREFIX: must not start with "aws" or "ssm" (reserved by SSM)',
    ]);
  });
});
