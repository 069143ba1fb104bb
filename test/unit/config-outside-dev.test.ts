import { describe, expect, it } from 'vitest';
import { ConfigError, endpointKeys, loadConfig } from '../../src/config.js';

/** A configuration fit for production: every rule below is broken one at a time from here. */
const production = {
  FLEETBOT_ENV: 'prod',
  AWS_REGION: 'eu-west-1',
  TELEGRAM_BOT_TOKEN: `123456789:${'A'.repeat(35)}`,
  DASHBOARD_PASSWORD: 'a-long-dashboard-password',
  KMS_KEY_ID: 'alias/fleetbot-secrets',
  SECRET_BINDER_FUNCTION: 'fleetbot-secret-binder',
};

function problemsOf(env: Record<string, string | undefined>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

const managedKeyAdvice =
  'the AWS managed key, which every principal in the account that may read SSM parameters can decrypt ' +
  'with; set your own key, the stack output KmsKeyAlias (alias/<Prefix>-secrets, see infra/README.md)';

describe('loadConfig outside FLEETBOT_ENV=dev', () => {
  it('when the production configuration is complete, then it loads', () => {
    expect(problemsOf(production)).toEqual([]);
  });

  describe('SECRET_BINDER_FUNCTION', () => {
    const required =
      "SECRET_BINDER_FUNCTION: is required unless FLEETBOT_ENV=dev: set the stack output SecretBinderFunctionName (see infra/README.md); only that function may give a server access to its member's secrets";

    it.each(['all', 'bot', 'worker', 'bot,dashboard'])(
      'when it is unset for the %s role, then it is required and the stack output is named',
      (role) => {
        expect(problemsOf({ ...production, FLEETBOT_ROLE: role, SECRET_BINDER_FUNCTION: undefined })).toEqual(
          [required],
        );
      },
    );

    it('when only the dashboard runs, then no binder is needed', () => {
      expect(
        problemsOf({ ...production, FLEETBOT_ROLE: 'dashboard', SECRET_BINDER_FUNCTION: undefined }),
      ).toEqual([]);
    });

    it('when it is unset in dev, then the service tags parameters itself and loads', () => {
      expect(problemsOf({ ...production, FLEETBOT_ENV: 'dev', SECRET_BINDER_FUNCTION: undefined })).toEqual(
        [],
      );
    });

    it.each([
      'fleetbot-secret-binder',
      'arn:aws:lambda:eu-west-1:111122223333:function:fleetbot-secret-binder',
    ])('when it names the function as %s, then it loads', (name) => {
      expect(loadConfig({ ...production, SECRET_BINDER_FUNCTION: name }).aws.secretBinderFunction).toBe(name);
    });

    it('when it is not a function name or ARN, then it is refused', () => {
      expect(problemsOf({ ...production, SECRET_BINDER_FUNCTION: 'no such/function' })).toEqual([
        'SECRET_BINDER_FUNCTION: must be a Lambda function name or ARN (the stack output SecretBinderFunctionName)',
      ]);
    });
  });

  describe('KMS_KEY_ID', () => {
    it('when it is unset, then the default alias/aws/ssm is refused and the stack output is named instead', () => {
      expect(problemsOf({ ...production, KMS_KEY_ID: undefined })).toEqual([
        `KMS_KEY_ID: is required unless FLEETBOT_ENV=dev, because its default alias/aws/ssm is ${managedKeyAdvice}`,
      ]);
    });

    it.each([
      'alias/aws/ssm',
      ' alias/aws/ssm ',
      'arn:aws:kms:eu-west-1:123456789012:alias/aws/ssm',
      'arn:aws-us-gov:kms:us-gov-west-1:123456789012:alias/aws/ssm',
    ])('when it is the AWS managed key as %j, then it is refused', (kmsKeyId) => {
      expect(problemsOf({ ...production, KMS_KEY_ID: kmsKeyId })).toEqual([
        `KMS_KEY_ID: must not be alias/aws/ssm unless FLEETBOT_ENV=dev: it is ${managedKeyAdvice}`,
      ]);
    });

    it.each([
      'alias/fleetbot-secrets',
      'arn:aws:kms:eu-west-1:123456789012:alias/fleetbot-secrets',
      'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
      // Another customer alias that merely contains the words.
      'alias/aws-ssm-fleet',
    ])('when it is a customer key such as %j, then it is accepted', (kmsKeyId) => {
      expect(loadConfig({ ...production, KMS_KEY_ID: kmsKeyId }).aws.kmsKeyId).toBe(kmsKeyId);
    });

    it('when FLEETBOT_ENV=dev (the default), then the AWS managed key stays the default', () => {
      const dev = { ...production, FLEETBOT_ENV: undefined, KMS_KEY_ID: undefined };
      expect(loadConfig(dev).aws.kmsKeyId).toBe('alias/aws/ssm');
      expect(loadConfig({ ...dev, KMS_KEY_ID: 'alias/aws/ssm' }).aws.kmsKeyId).toBe('alias/aws/ssm');
    });
  });

  describe('API roots and endpoints', () => {
    it.each(endpointKeys)('when %s is http://, loopback included, then it is refused', (key) => {
      for (const url of ['http://api.example.com', 'http://127.0.0.1:5000', 'HTTP://localhost/x']) {
        expect(problemsOf({ ...production, [key]: url })).toEqual([
          `${key}: must be an https:// URL unless FLEETBOT_ENV=dev (http:// is sent in clear text)`,
        ]);
      }
    });

    it('when every endpoint is https://, then they are accepted', () => {
      const https = Object.fromEntries(endpointKeys.map((key) => [key, 'https://api.example.com/root']));
      const config = loadConfig({
        ...production,
        ...https,
        TELEGRAM_MODE: 'webhook',
        TELEGRAM_WEBHOOK_SECRET: 'webhook-secret-0123456789',
        SLACK_BOT_TOKEN: 'xoxb-1',
        SLACK_SIGNING_SECRET: 'signing',
      });
      expect(config.aws.endpoint).toBe('https://api.example.com/root');
      expect(config.telegram?.apiRoot).toBe('https://api.example.com/root');
    });

    it('when FLEETBOT_ENV=dev, then http:// endpoints (the local emulators) are accepted', () => {
      const http = Object.fromEntries(endpointKeys.map((key) => [key, 'http://127.0.0.1:5000']));
      const config = loadConfig({
        ...production,
        ...http,
        FLEETBOT_ENV: 'dev',
        TELEGRAM_MODE: 'webhook',
        TELEGRAM_WEBHOOK_SECRET: 'webhook-secret-0123456789',
        SLACK_BOT_TOKEN: 'xoxb-1',
        SLACK_SIGNING_SECRET: 'signing',
      });
      expect(config.aws.endpoint).toBe('http://127.0.0.1:5000');
      expect(config.intake.openAiBaseUrl).toBe('http://127.0.0.1:5000');
    });

    it('when FLEETBOT_ENV is not a valid name, then it counts as not dev', () => {
      const problems = problemsOf({ ...production, FLEETBOT_ENV: 'DEV', AWS_ENDPOINT_URL: 'http://x.test' });
      expect(problems).toContain(
        'AWS_ENDPOINT_URL: must be an https:// URL unless FLEETBOT_ENV=dev (http:// is sent in clear text)',
      );
      expect(problems.some((p) => p.startsWith('FLEETBOT_ENV:'))).toBe(true);
    });
  });

  it('when several rules are broken, then one error lists them all with the schema findings', () => {
    const problems = problemsOf({
      ...production,
      KMS_KEY_ID: 'alias/aws/ssm',
      TELEGRAM_API_ROOT: 'http://127.0.0.1:8081',
      DASHBOARD_PASSWORD: 'short',
      REDIS_URL: 'not-a-url',
    });
    expect(problems.map((p) => p.split(':')[0]).sort()).toEqual([
      'DASHBOARD_PASSWORD',
      'KMS_KEY_ID',
      'REDIS_URL',
      'TELEGRAM_API_ROOT',
    ]);
  });
});

describe('DASHBOARD_PASSWORD length', () => {
  const canary = 'CANARY-short-pw';
  it.each(['dev', 'prod'])(
    'when it is shorter than 16 characters (FLEETBOT_ENV=%s), then it is refused without being printed',
    (env) => {
      const problems = problemsOf({ ...production, FLEETBOT_ENV: env, DASHBOARD_PASSWORD: canary });
      expect(canary).toHaveLength(15);
      expect(problems).toEqual([
        'DASHBOARD_PASSWORD: must be at least 16 characters (for example: openssl rand -base64 24)',
      ]);
      expect(problems.join('\n')).not.toContain('CANARY');
    },
  );

  it('when it has exactly 16 characters (surrounding spaces do not count), then it is accepted', () => {
    expect(loadConfig({ ...production, DASHBOARD_PASSWORD: '  0123456789abcdef  ' }).dashboard.password).toBe(
      '0123456789abcdef',
    );
    expect(problemsOf({ ...production, DASHBOARD_PASSWORD: '  0123456789abcde  ' })).toHaveLength(1);
  });

  it('when a process without the dashboard role sets a short one, then it is still refused', () => {
    expect(() =>
      loadConfig({ AWS_REGION: 'eu-west-1', DASHBOARD_PASSWORD: 'pw' }, { roles: ['worker'] }),
    ).toThrow('DASHBOARD_PASSWORD: must be at least 16 characters');
  });
});
