import { z } from 'zod';
import { defaultRolloutAwsWaitSeconds } from './core/aws-wait.js';
import { slackChannelIdPattern, slackUserIdPattern, telegramUserIdPattern } from './core/caller.js';
import { parameterPrefixPattern } from './core/parameter-names.js';
import { type SecretKindName, secretKindNames, telegramBotTokenPattern } from './core/secret-kinds.js';
import { versionPattern } from './core/version.js';

/**
 * The whole configuration, read once from an env-shaped record by the composition root.
 * Pure: no process.env, no I/O. Errors name the key and the reason, never the value, because
 * several keys hold secrets and a config error ends up in a terminal or a log.
 */

export const roles = ['bot', 'worker', 'dashboard', 'all'] as const;
export type ProcessRole = Exclude<(typeof roles)[number], 'all'>;
export const roleUsage = `one or more of ${roles.join(', ')}, separated by commas`;
const everyRole: readonly ProcessRole[] = ['bot', 'worker', 'dashboard'];

/**
 * `worker,dashboard` names the roles one process runs (a worker with its own /metrics, say);
 * `all` is every role. Undefined when any part is not a role.
 */
export function parseRoles(value: string): readonly ProcessRole[] | undefined {
  const parts = value.split(',').map((part) => part.trim());
  if (!parts.every((part) => (roles as readonly string[]).includes(part))) return undefined;
  if (parts.includes('all')) return everyRole;
  return [...new Set(parts as ProcessRole[])];
}

const optional = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

const csv = z
  .string()
  .optional()
  .transform((v) =>
    (v ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
  );

const url = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' });
/** Characters a dashboard password needs at least. */
export const minDashboardPassword = 16;
const listen = (fallback: string) =>
  z
    .string()
    .trim()
    .default(fallback)
    .pipe(z.string().regex(/^[^\s:]+:\d{1,5}$/, 'must be host:port'))
    .transform((v) => {
      const at = v.lastIndexOf(':');
      return { host: v.slice(0, at), port: Number(v.slice(at + 1)) };
    });
const positiveMs = (fallback: number) => z.coerce.number().int().positive().default(fallback);
/** SSM's own rule for document names (CreateDocument): 3-128 letters, digits, _ . -. */
const ssmDocument = (fallback: string) =>
  z
    .string()
    .trim()
    .regex(/^[A-Za-z0-9_.-]{3,128}$/, 'must be an SSM document name')
    .default(fallback);
/** A rollout default: a number of instances, or a percentage of them from 1% to 100%. */
const rolloutAmount = (fallback: string) =>
  z
    .string()
    .trim()
    .regex(/^(\d{1,5}|([1-9]\d?|100)%)$/, 'must be N or N%')
    .default(fallback);

const envSchema = z.object({
  FLEETBOT_ROLE: z
    .string()
    .trim()
    .default('all')
    .refine((value) => parseRoles(value) !== undefined, `must be ${roleUsage}`),
  FLEETBOT_ENV: z
    .string()
    .trim()
    .regex(/^[a-z0-9-]{1,32}$/, 'must be 1-32 of a-z, 0-9, -')
    .default('dev'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  SHUTDOWN_GRACE_MS: positiveMs(10_000),
  JOB_LOCK_SECONDS: z.coerce.number().int().min(2).max(3600).default(120),

  REDIS_URL: z
    .string()
    .trim()
    .default('redis://127.0.0.1:6379')
    .transform((value, ctx) => {
      const nodes = parseRedisUrls(value);
      if (!nodes) ctx.addIssue({ code: 'custom', message: redisUrlUsage });
      return nodes ?? [];
    }),
  REDIS_CLUSTER: optional.pipe(z.enum(['true', 'false']).optional()),
  REDIS_PASSWORD: optional,
  REDIS_TLS_CA_FILE: optional,
  REDIS_PREFIX: z
    .string()
    .trim()
    .regex(
      /^[A-Za-z0-9_-]*(\{[A-Za-z0-9_-]+\}[A-Za-z0-9_-]*)?$/,
      'must be A-Z a-z 0-9 _ - with at most one {hash tag}',
    )
    .refine((value) => value.length >= 1 && value.length <= 40, 'must be 1-40 characters')
    .default('{fleetbot}'),

  AWS_REGION: z
    .string()
    .trim()
    .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'must be an AWS region such as eu-west-1'),
  AWS_ENDPOINT_URL: url.optional(),
  PARAMETER_PREFIX: z
    .string()
    .trim()
    .regex(parameterPrefixPattern, 'must be one path segment of 1-40 letters, digits, _ . -')
    .refine((v) => !/^(aws|ssm)/i.test(v), 'must not start with "aws" or "ssm" (reserved by SSM)')
    .default('fleetbot'),
  KMS_KEY_ID: z.string().trim().min(1).default('alias/aws/ssm'),
  // The stack's SecretBinderFunction (name or ARN); see src/aws/secret-binder.ts.
  SECRET_BINDER_FUNCTION: optional.pipe(
    z
      .string()
      .regex(
        /^(arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:)?[A-Za-z0-9_-]{1,64}$/,
        'must be a Lambda function name or ARN (the stack output SecretBinderFunctionName)',
      )
      .optional(),
  ),

  TELEGRAM_BOT_TOKEN: optional.pipe(
    z.string().regex(telegramBotTokenPattern, 'must look like a Telegram bot token').optional(),
  ),
  TELEGRAM_MODE: z.enum(['polling', 'webhook']).default('polling'),
  TELEGRAM_WEBHOOK_URL: url.optional(),
  TELEGRAM_WEBHOOK_SECRET: optional.pipe(
    z
      .string()
      .regex(/^[A-Za-z0-9_-]{16,256}$/, 'must be 16-256 of A-Z a-z 0-9 _ -')
      .optional(),
  ),
  TELEGRAM_WEBHOOK_LISTEN: listen('0.0.0.0:8443'),
  TELEGRAM_API_ROOT: url.default('https://api.telegram.org'),
  TELEGRAM_POLL_LEASE_SECONDS: z.coerce
    .number()
    .refine(
      (v) => Number.isInteger(v) && v >= 2 && v <= 600,
      'must be a whole number of seconds from 2 to 600',
    )
    .default(30),
  TELEGRAM_ALLOWED_USER_IDS: csv.pipe(
    z.array(z.string().regex(telegramUserIdPattern, 'must be numeric Telegram user ids')),
  ),

  SLACK_BOT_TOKEN: optional.pipe(z.string().startsWith('xoxb-', 'must start with xoxb-').optional()),
  SLACK_SIGNING_SECRET: optional,
  SLACK_APP_TOKEN: optional.pipe(z.string().startsWith('xapp-', 'must start with xapp-').optional()),
  SLACK_LISTEN: listen('0.0.0.0:3000'),
  // Slack command names are lowercase, at most 32 characters with the slash (api.slack.com/reference/manifests).
  SLACK_COMMAND: z
    .string()
    .trim()
    .default('fleetbot')
    .pipe(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,30}$/, 'must be a Slack command name without the slash')),
  SLACK_API_URL: url.optional(),
  SLACK_ADMIN_USER_IDS: csv.pipe(
    z.array(z.string().regex(slackUserIdPattern, 'must be Slack user ids (U…)')),
  ),
  SLACK_ALLOWED_CHANNEL_IDS: csv.pipe(
    z.array(z.string().regex(slackChannelIdPattern, 'must be Slack channel ids (C…)')),
  ),

  OPENAI_BASE_URL: url.optional(),
  INTAKE_PER_USER_PER_MINUTE: z.coerce.number().int().min(1).max(1000).default(10),
  PARAMETER_WRITES_PER_SECOND: z.coerce.number().positive().max(100).default(2),
  INVITE_TTL_HOURS: z.coerce.number().int().min(1).max(720).default(168),
  SET_TIMEOUT_SECONDS: z.coerce.number().int().min(10).max(3600).default(120),
  // Members' own commands (src/core/command-limits.ts); admins are never limited by them.
  MEMBER_COMMANDS_PER_MINUTE: z.coerce.number().int().min(1).max(1000).default(10),
  MEMBER_SERVER_ACTIONS_PER_HOUR: z.coerce.number().int().min(1).max(1000).default(20),
  PROVISION_COOLDOWN_SECONDS: z.coerce.number().int().min(0).max(86_400).default(600),
  LAUNCHES_PER_MEMBER_PER_DAY: z.coerce.number().int().min(1).max(100).default(3),
  REFUSAL_WINDOW_SECONDS: z.coerce.number().int().min(10).max(86_400).default(600),
  GUEST_REPLIES_PER_WINDOW: z.coerce.number().int().min(0).max(100).default(3),

  DASHBOARD_LISTEN: listen('127.0.0.1:8080'),
  DASHBOARD_USER: z.string().trim().min(1).default('ops'),
  // Basic auth over the network can be guessed at: a short password is refused in every environment.
  DASHBOARD_PASSWORD: optional.pipe(
    z
      .string()
      .refine(
        (v) => [...v].length >= minDashboardPassword,
        `must be at least ${minDashboardPassword} characters (for example: openssl rand -base64 24)`,
      )
      .optional(),
  ),
  AUDIT_RETENTION: z.coerce.number().int().min(100).max(10_000_000).default(100_000),
  DASHBOARD_ALLOW_ACTIONS: z.enum(['true', 'false']).default('false'),
  METRICS_PUBLIC: z.enum(['true', 'false']).default('false'),

  INSTANCE_LAUNCH_TEMPLATE: optional,
  INSTANCE_AMI_ID: optional.pipe(
    z
      .string()
      .regex(/^ami-[0-9a-f]{8,17}$/, 'must be an AMI id (ami-…)')
      .optional(),
  ),
  // Ordered choices: a launch EC2 answers InsufficientInstanceCapacity moves on to the next.
  INSTANCE_TYPE: csv.pipe(
    z
      .array(
        z
          .string()
          .regex(
            /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/,
            'must be instance types such as t3.small, separated by commas',
          ),
      )
      .max(10, 'must list at most 10 instance types')
      .refine((types) => new Set(types).size === types.length, 'must not list an instance type twice'),
  ),
  INSTANCE_SUBNET_ID: csv.pipe(
    z
      .array(
        z.string().regex(/^subnet-[0-9a-f]{8,17}$/, 'must be subnet ids (subnet-…), separated by commas'),
      )
      .max(10, 'must list at most 10 subnets')
      .refine((ids) => new Set(ids).size === ids.length, 'must not list a subnet twice'),
  ),
  INSTANCE_PROFILE_WAIT_SECONDS: z.coerce.number().int().min(0).max(900).default(120),
  INSTANCE_SECURITY_GROUP_ID: optional,
  INSTANCE_PROFILE_NAME: optional,
  INSTANCE_SERVICE_NAME: z.string().trim().default('assistant'),
  INSTANCE_INSTALL_COMMAND: optional,
  INSTANCE_SERVICE_VERSION: optional.pipe(
    z
      .string()
      // /deploy's rule: a new server never runs a version that no deploy could name.
      .regex(versionPattern, 'must be a version such as v1.2.3 or 1.2.3-rc.1, without leading zeros')
      .optional(),
  ),
  INSTANCE_ON_FAILURE: z.enum(['terminate', 'keep']).default('terminate'),
  PROVISION_REQUIRED_SECRETS: csv.pipe(z.array(z.enum(secretKindNames, 'must list known secret kinds'))),
  PROVISION_POLL_MS: z.coerce.number().int().min(50).max(60_000).default(10_000),
  PROVISION_RUNNING_TIMEOUT_SECONDS: z.coerce.number().int().min(1).default(300),
  PROVISION_CHECKS_TIMEOUT_SECONDS: z.coerce.number().int().min(1).default(900),
  PROVISION_BOOTSTRAP_TIMEOUT_SECONDS: z.coerce.number().int().min(1).default(900),
  LAUNCHES_PER_SECOND: z.coerce.number().positive().max(20).default(2),
  SSM_BOOTSTRAP_CHECK_DOCUMENT: ssmDocument('fleetbot-bootstrap-check'),
  SSM_RESTART_DOCUMENT: ssmDocument('fleetbot-restart-service'),
  ROLLOUT_DEFAULT_CONCURRENCY: rolloutAmount('20%'),
  ROLLOUT_DEFAULT_MAX_ERRORS: rolloutAmount('5%'),
  ROLLOUT_POLL_MS: z.coerce.number().int().min(50).max(60_000).default(10_000),
  ROLLOUT_COMMAND_TIMEOUT_SECONDS: z.coerce.number().int().min(30).max(172_800).default(900),
  ROLLOUT_PLAN_TTL_MINUTES: z.coerce.number().int().min(1).max(1440).default(15),
  ROLLOUT_TWO_PERSON_RULE: z.enum(['true', 'false']).default('false'),
  SCHEDULED_SCANS_NEED_APPROVAL: z.enum(['true', 'false']).default('true'),
  FLEET_CACHE_SECONDS: z.coerce.number().int().min(0).max(300).default(5),
  ROLLOUT_AWS_WAIT_SECONDS: z.coerce.number().int().min(10).max(86_400).default(defaultRolloutAwsWaitSeconds),
  ROLLOUT_DELIVERY_WAIT_SECONDS: z.coerce.number().int().min(1).max(86_400).default(120),
  SSM_LISTING_LAG_SECONDS: z.coerce.number().int().min(0).max(300).default(10),
  ROLLOUT_EVENTS_QUEUE_URL: url.optional(),
  ROLLOUT_EVENTS_SAFETY_POLL_SECONDS: z.coerce.number().int().min(1).max(3600).default(60),
  SSM_REQUESTS_PER_SECOND: z.coerce.number().positive().max(100).default(5),
  SSM_DEPLOY_DOCUMENT: ssmDocument('fleetbot-deploy'),
  SLACK_UPDATES_PER_MINUTE: z.coerce.number().int().min(1).max(600).default(40),
  SLACK_ALERT_CHANNEL_ID: optional.pipe(
    z.string().regex(slackChannelIdPattern, 'must be a Slack channel id (C…)').optional(),
  ),
});

/** Every key the service reads; .env.example and the README document exactly these. */
export const configKeys = Object.keys(envSchema.shape);

/** How to reach Redis: one server, or a Redis Cluster through any of its nodes. */
export interface RedisSettings {
  /** The server, or the cluster's seed nodes (any members, or a managed cluster's configuration endpoint). */
  nodes: { host: string; port: number }[];
  cluster: boolean;
  tls: boolean;
  username?: string;
  password?: string;
  /** A PEM file with the CA that signed the servers' certificates; managed Redis needs none. */
  tlsCaFile?: string;
  /** Database number, for one server only (a cluster has database 0 alone). */
  db: number;
  /** Starts every key fleetbot and BullMQ write; on a cluster it holds a {hash tag}. */
  prefix: string;
}

export interface Config {
  roles: readonly ProcessRole[];
  env: string;
  logLevel: z.infer<typeof envSchema>['LOG_LEVEL'];
  shutdownGraceMs: number;
  /** How long a provision or rollout stays claimed by a worker that stopped renewing it (crashed). */
  jobLockMs: number;
  redis: RedisSettings;
  aws: {
    region: string;
    endpoint?: string;
    parameterPrefix: string;
    kmsKeyId: string;
    /** Unset only in dev: the service then tags parameters itself. */
    secretBinderFunction?: string;
  };
  telegram?: {
    token: string;
    mode: 'polling' | 'webhook';
    webhook?: { url: string; secret: string; host: string; port: number };
    apiRoot: string;
    /** Polling mode: how long another process waits before taking over from a poller that died. */
    pollLeaseMs: number;
  };
  slack?: {
    botToken: string;
    signingSecret?: string;
    appToken?: string;
    host: string;
    port: number;
    apiUrl?: string;
    /** The one namespaced slash command (`/fleetbot jobs`) beside /deploy and /patch. */
    command: string;
  };
  intake: {
    openAiBaseUrl?: string;
    perUserPerMinute: number;
    parameterWritesPerSecond: number;
    inviteTtlMs: number;
    setTimeoutMs: number;
  };
  rollout: {
    defaultConcurrency: string;
    defaultMaxErrors: string;
    pollMs: number;
    commandTimeoutSeconds: number;
    planTtlMs: number;
    twoPersonRule: boolean;
    /** Patch-scan schedules wait for approval like installs do (false: scans are scheduled at once). */
    scanSchedulesNeedApproval: boolean;
    /** How long one stretch of AWS throttling, 5xx or network errors may last before a rollout gives up. */
    awsWaitMs: number;
    /** How long an invocation may stay Delayed (SSM cannot deliver it) before its instance counts as not reachable. */
    deliveryWaitMs: number;
    /** How long ListCommands may take to show a command just sent (eventual consistency). */
    listingLagMs: number;
    /**
     * The SQS queue Run Command's completion events reach (infra/fleetbot.yaml, RolloutEventsQueue):
     * a finished instance frees its slot at once. Without one, rollouts poll adaptively.
     */
    eventsQueueUrl?: string;
    /** With events, how often a running command is read all the same: what a lost event can cost. */
    safetyPollMs: number;
    ssmRequestsPerSecond: number;
    deployDocument: string;
    slackUpdatesPerMinute: number;
  };
  /** How long one fleet listing (EC2 + SSM agents) serves every reader; 0 shares only in-flight reads. */
  fleetCacheMs: number;
  /** How many audit records the Redis stream keeps (oldest trimmed first). */
  auditRetention: number;
  /** Members' command limits, and how refusals of anyone but admins are recorded and answered. */
  limits: {
    commandsPerMinute: number;
    serverActionsPerHour: number;
    provisionCooldownMs: number;
    launchesPerDay: number;
    /** One audit record per sender and window of refusals; guests' reply budget is per window too. */
    refusalWindowMs: number;
    guestRepliesPerWindow: number;
  };
  /** Who may do what; closed by default (empty lists allow nobody). */
  access: { telegramUserIds: string[]; slackAdminIds: string[]; slackChannelIds: string[] };
  dashboard: {
    host: string;
    port: number;
    user: string;
    password?: string;
    /** Retry/clean buttons in the job dashboard; read-only otherwise. */
    allowActions: boolean;
    metricsPublic: boolean;
  };
  instances: {
    launchTemplate?: string;
    amiId?: string;
    /** The first of instanceTypes. */
    instanceType: string;
    /** In the order launches try them when EC2 has no capacity. */
    instanceTypes: string[];
    /** The first of subnetIds. */
    subnetId?: string;
    subnetIds: string[];
    /** How long a launch retries while EC2 does not accept the instance profile yet. */
    profileWaitMs: number;
    securityGroupId?: string;
    profileName?: string;
    serviceName: string;
    installCommand?: string;
    version?: string;
  };
  provisioning: {
    requiredSecrets: SecretKindName[];
    onFailure: 'terminate' | 'keep';
    pollMs: number;
    timeoutsMs: { running: number; checks: number; bootstrap: number };
    launchesPerSecond: number;
    bootstrapCheckDocument: string;
    restartDocument: string;
    /** Where admins hear about failed provisions. */
    alertChannelId?: string;
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

/** Parses the environment into a Config, or throws one ConfigError listing every problem by key. */
export function loadConfig(
  env: Env,
  overrides: { roles?: readonly ProcessRole[]; console?: boolean } = {},
): Config {
  const parsed = envSchema.safeParse(env);
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => {
        const key = String(issue.path[0] ?? '?');
        // zod's default messages may quote the received value; only our own messages and the
        // expected-type wording are safe, so missing keys get a fixed sentence.
        const missing = issue.code === 'invalid_type' && env[key] === undefined;
        return `${key}: ${missing ? 'is required' : safeMessage(issue)}`;
      });
  // A bad FLEETBOT_ROLE is reported by the schema; meanwhile check the rest as for every role.
  const processRoles = overrides.roles ?? parseRoles(env.FLEETBOT_ROLE ?? 'all') ?? everyRole;
  // Checked on the raw values so that one message lists these together with the schema's findings.
  problems.push(...missingTogether(env, processRoles, Boolean(overrides.console)));
  problems.push(...outsideDev(env, processRoles));
  if (!parsed.success || problems.length > 0) throw new ConfigError(problems);
  const e = parsed.data;

  return {
    roles: processRoles,
    env: e.FLEETBOT_ENV,
    logLevel: e.LOG_LEVEL,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    jobLockMs: e.JOB_LOCK_SECONDS * 1000,
    redis: {
      ...redisEndpoint(e.REDIS_URL, e.REDIS_PASSWORD),
      cluster: isCluster(e.REDIS_CLUSTER, e.REDIS_URL.length),
      tlsCaFile: e.REDIS_TLS_CA_FILE,
      prefix: e.REDIS_PREFIX,
    },
    aws: {
      region: e.AWS_REGION,
      endpoint: e.AWS_ENDPOINT_URL,
      parameterPrefix: e.PARAMETER_PREFIX,
      kmsKeyId: e.KMS_KEY_ID,
      secretBinderFunction: e.SECRET_BINDER_FUNCTION,
    },
    telegram: telegramSettings(e),
    slack: slackSettings(e),
    intake: {
      openAiBaseUrl: e.OPENAI_BASE_URL,
      perUserPerMinute: e.INTAKE_PER_USER_PER_MINUTE,
      parameterWritesPerSecond: e.PARAMETER_WRITES_PER_SECOND,
      inviteTtlMs: e.INVITE_TTL_HOURS * 3_600_000,
      setTimeoutMs: e.SET_TIMEOUT_SECONDS * 1000,
    },
    rollout: rolloutSettings(e),
    fleetCacheMs: e.FLEET_CACHE_SECONDS * 1000,
    auditRetention: e.AUDIT_RETENTION,
    limits: {
      commandsPerMinute: e.MEMBER_COMMANDS_PER_MINUTE,
      serverActionsPerHour: e.MEMBER_SERVER_ACTIONS_PER_HOUR,
      provisionCooldownMs: e.PROVISION_COOLDOWN_SECONDS * 1000,
      launchesPerDay: e.LAUNCHES_PER_MEMBER_PER_DAY,
      refusalWindowMs: e.REFUSAL_WINDOW_SECONDS * 1000,
      guestRepliesPerWindow: e.GUEST_REPLIES_PER_WINDOW,
    },
    access: {
      telegramUserIds: e.TELEGRAM_ALLOWED_USER_IDS,
      slackAdminIds: e.SLACK_ADMIN_USER_IDS,
      slackChannelIds: e.SLACK_ALLOWED_CHANNEL_IDS,
    },
    dashboard: {
      ...e.DASHBOARD_LISTEN,
      user: e.DASHBOARD_USER,
      password: e.DASHBOARD_PASSWORD,
      allowActions: e.DASHBOARD_ALLOW_ACTIONS === 'true',
      metricsPublic: e.METRICS_PUBLIC === 'true',
    },
    instances: instanceSettings(e),
    provisioning: provisioningSettings(e),
  };
}

/** The environment once the schema accepted it. */
type ParsedEnv = z.output<typeof envSchema>;

function telegramSettings(e: ParsedEnv): Config['telegram'] {
  if (!e.TELEGRAM_BOT_TOKEN) return undefined;
  return {
    token: e.TELEGRAM_BOT_TOKEN,
    mode: e.TELEGRAM_MODE,
    webhook:
      e.TELEGRAM_MODE === 'webhook' && e.TELEGRAM_WEBHOOK_URL && e.TELEGRAM_WEBHOOK_SECRET
        ? { url: e.TELEGRAM_WEBHOOK_URL, secret: e.TELEGRAM_WEBHOOK_SECRET, ...e.TELEGRAM_WEBHOOK_LISTEN }
        : undefined,
    apiRoot: e.TELEGRAM_API_ROOT,
    pollLeaseMs: e.TELEGRAM_POLL_LEASE_SECONDS * 1000,
  };
}

function slackSettings(e: ParsedEnv): Config['slack'] {
  if (!e.SLACK_BOT_TOKEN) return undefined;
  return {
    botToken: e.SLACK_BOT_TOKEN,
    signingSecret: e.SLACK_SIGNING_SECRET,
    appToken: e.SLACK_APP_TOKEN,
    ...e.SLACK_LISTEN,
    apiUrl: e.SLACK_API_URL,
    command: e.SLACK_COMMAND,
  };
}

function rolloutSettings(e: ParsedEnv): Config['rollout'] {
  return {
    defaultConcurrency: e.ROLLOUT_DEFAULT_CONCURRENCY,
    defaultMaxErrors: e.ROLLOUT_DEFAULT_MAX_ERRORS,
    pollMs: e.ROLLOUT_POLL_MS,
    commandTimeoutSeconds: e.ROLLOUT_COMMAND_TIMEOUT_SECONDS,
    planTtlMs: e.ROLLOUT_PLAN_TTL_MINUTES * 60_000,
    twoPersonRule: e.ROLLOUT_TWO_PERSON_RULE === 'true',
    scanSchedulesNeedApproval: e.SCHEDULED_SCANS_NEED_APPROVAL === 'true',
    awsWaitMs: e.ROLLOUT_AWS_WAIT_SECONDS * 1000,
    deliveryWaitMs: e.ROLLOUT_DELIVERY_WAIT_SECONDS * 1000,
    listingLagMs: e.SSM_LISTING_LAG_SECONDS * 1000,
    eventsQueueUrl: e.ROLLOUT_EVENTS_QUEUE_URL,
    safetyPollMs: e.ROLLOUT_EVENTS_SAFETY_POLL_SECONDS * 1000,
    ssmRequestsPerSecond: e.SSM_REQUESTS_PER_SECOND,
    deployDocument: e.SSM_DEPLOY_DOCUMENT,
    slackUpdatesPerMinute: e.SLACK_UPDATES_PER_MINUTE,
  };
}

function instanceSettings(e: ParsedEnv): Config['instances'] {
  return {
    launchTemplate: e.INSTANCE_LAUNCH_TEMPLATE,
    amiId: e.INSTANCE_AMI_ID,
    instanceType: e.INSTANCE_TYPE[0] ?? 't3.small',
    instanceTypes: e.INSTANCE_TYPE.length > 0 ? e.INSTANCE_TYPE : ['t3.small'],
    subnetId: e.INSTANCE_SUBNET_ID[0],
    subnetIds: e.INSTANCE_SUBNET_ID,
    profileWaitMs: e.INSTANCE_PROFILE_WAIT_SECONDS * 1000,
    securityGroupId: e.INSTANCE_SECURITY_GROUP_ID,
    profileName: e.INSTANCE_PROFILE_NAME,
    serviceName: e.INSTANCE_SERVICE_NAME,
    installCommand: e.INSTANCE_INSTALL_COMMAND,
    version: e.INSTANCE_SERVICE_VERSION,
  };
}

function provisioningSettings(e: ParsedEnv): Config['provisioning'] {
  return {
    requiredSecrets:
      e.PROVISION_REQUIRED_SECRETS.length > 0 ? e.PROVISION_REQUIRED_SECRETS : [...secretKindNames],
    onFailure: e.INSTANCE_ON_FAILURE,
    pollMs: e.PROVISION_POLL_MS,
    timeoutsMs: {
      running: e.PROVISION_RUNNING_TIMEOUT_SECONDS * 1000,
      checks: e.PROVISION_CHECKS_TIMEOUT_SECONDS * 1000,
      bootstrap: e.PROVISION_BOOTSTRAP_TIMEOUT_SECONDS * 1000,
    },
    launchesPerSecond: e.LAUNCHES_PER_SECOND,
    bootstrapCheckDocument: e.SSM_BOOTSTRAP_CHECK_DOCUMENT,
    restartDocument: e.SSM_RESTART_DOCUMENT,
    alertChannelId: e.SLACK_ALERT_CHANNEL_ID,
  };
}

function safeMessage(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'invalid_value':
      return `must be one of ${issue.values.map(String).join(', ')}`;
    case 'invalid_type':
      return `must be a ${issue.expected}`;
    case 'too_small':
      return 'must not be empty';
    case 'invalid_format':
      // Our own regex messages ("must look like…") never contain the value; zod's defaults might.
      return issue.message.startsWith('must') ? issue.message : `has an invalid ${issue.format} format`;
    default:
      return issue.message.startsWith('must') ? issue.message : 'is invalid';
  }
}

const redisUrlUsage =
  "must be a redis:// or rediss:// URL, or several (a cluster's seed nodes) separated by commas, all redis:// or all rediss://";

/** One URL, or a cluster's seed nodes separated by commas; undefined when any part is not a Redis URL. */
function parseRedisUrls(value: string): URL[] | undefined {
  const urls = value.split(',').map((part) => URL.parse(part.trim()));
  if (urls.some((u) => !u || !/^rediss?:$/.test(u.protocol) || !u.hostname)) return undefined;
  const valid = urls as URL[];
  return valid.every((u) => u.protocol === valid[0]?.protocol) ? valid : undefined;
}

/** Where Redis is and how to log in; the password of REDIS_PASSWORD wins (a secret injected apart from the URL). */
function redisEndpoint(urls: URL[], password: string | undefined): Omit<RedisSettings, 'cluster' | 'prefix'> {
  const first = urls[0] as URL;
  const db = Number(first.pathname.slice(1) || 0);
  return {
    nodes: urls.map((u) => ({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379) })),
    tls: first.protocol === 'rediss:',
    username: decodeURIComponent(first.username) || undefined,
    password: password ?? (decodeURIComponent(first.password) || undefined),
    db: Number.isInteger(db) ? db : 0,
  };
}

/** REDIS_CLUSTER when set; otherwise several seed nodes mean a cluster and one node a single server. */
function isCluster(setting: string | undefined, nodeCount: number): boolean {
  return setting ? setting === 'true' : nodeCount > 1;
}

/** A cluster keeps multi-key scripts and BullMQ's queues atomic only when their keys share one slot. */
function clusterNeedsHashTag(env: Env): string[] {
  const urls = parseRedisUrls((env.REDIS_URL ?? '').trim() || 'redis://127.0.0.1:6379');
  const cluster = isCluster(env.REDIS_CLUSTER?.trim(), urls?.length ?? 1);
  const prefix = env.REDIS_PREFIX?.trim() ?? '{fleetbot}';
  return cluster && !/\{[^}]+\}/.test(prefix)
    ? [
        `REDIS_PREFIX: must hold a hash tag on a Redis Cluster, such as {${prefix}}, so every key fleetbot writes lands in one slot`,
      ]
    : [];
}

function missingTogether(env: Env, processRoles: readonly ProcessRole[], withConsole: boolean): string[] {
  const has = (key: string) => (env[key] ?? '').trim() !== '';
  const runs = (r: ProcessRole) => processRoles.includes(r);
  const problems: string[] = [...clusterNeedsHashTag(env)];
  if (has('TELEGRAM_BOT_TOKEN') && env.TELEGRAM_MODE === 'webhook') {
    if (!has('TELEGRAM_WEBHOOK_URL'))
      problems.push('TELEGRAM_WEBHOOK_URL: is required when TELEGRAM_MODE=webhook');
    if (!has('TELEGRAM_WEBHOOK_SECRET'))
      problems.push('TELEGRAM_WEBHOOK_SECRET: is required when TELEGRAM_MODE=webhook');
  }
  if (has('SLACK_BOT_TOKEN') && !has('SLACK_SIGNING_SECRET') && !has('SLACK_APP_TOKEN'))
    problems.push(
      'SLACK_SIGNING_SECRET: is required (or SLACK_APP_TOKEN for Socket Mode) when SLACK_BOT_TOKEN is set',
    );
  if (runs('bot') && !has('TELEGRAM_BOT_TOKEN') && !has('SLACK_BOT_TOKEN') && !withConsole)
    problems.push('TELEGRAM_BOT_TOKEN: is required (or SLACK_BOT_TOKEN) for the bot role');
  if (runs('dashboard') && !has('DASHBOARD_PASSWORD'))
    problems.push(
      'DASHBOARD_PASSWORD: is required for the dashboard role (an empty password never means open)',
    );
  return problems;
}

/** Every key that names a server fleetbot talks to (or, for the webhook, one Telegram posts to). */
export const endpointKeys = [
  'AWS_ENDPOINT_URL',
  'TELEGRAM_API_ROOT',
  'TELEGRAM_WEBHOOK_URL',
  'SLACK_API_URL',
  'OPENAI_BASE_URL',
] as const;

/** SSM's AWS managed key, by alias or alias ARN (any partition, region and account). */
const awsManagedSsmKey = /^(alias\/aws\/ssm|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:alias\/aws\/ssm)$/;

/**
 * What only a developer's machine may get away with. Checked on the raw values, so one message lists
 * these with the schema's findings; an invalid FLEETBOT_ENV counts as not dev.
 */
function outsideDev(env: Env, processRoles: readonly ProcessRole[]): string[] {
  if ((env.FLEETBOT_ENV ?? 'dev').trim() === 'dev') return [];
  const problems: string[] = [];
  // No loopback exception: outside dev, an http:// endpoint carries tokens, secrets and AWS signatures in clear.
  for (const key of endpointKeys)
    if (/^\s*http:/i.test(env[key] ?? ''))
      problems.push(
        `${key}: must be an https:// URL unless FLEETBOT_ENV=dev (http:// is sent in clear text)`,
      );
  const kmsKey = env.KMS_KEY_ID?.trim();
  const managedKey =
    'the AWS managed key, which every principal in the account that may read SSM parameters can decrypt ' +
    'with; set your own key, the stack output KmsKeyAlias (alias/<Prefix>-secrets, see infra/README.md)';
  // An empty value is the schema's to report.
  if (kmsKey === undefined)
    problems.push(
      `KMS_KEY_ID: is required unless FLEETBOT_ENV=dev, because its default alias/aws/ssm is ${managedKey}`,
    );
  else if (awsManagedSsmKey.test(kmsKey))
    problems.push(`KMS_KEY_ID: must not be alias/aws/ssm unless FLEETBOT_ENV=dev: it is ${managedKey}`);
  // The bot (a re-stored secret) and the worker (a provisioned server) bind; the stack's role lets
  // only its binder do that, so without it every binding would be refused.
  if (!env.SECRET_BINDER_FUNCTION?.trim() && processRoles.some((r) => r === 'bot' || r === 'worker'))
    problems.push(
      "SECRET_BINDER_FUNCTION: is required unless FLEETBOT_ENV=dev: set the stack output SecretBinderFunctionName (see infra/README.md); only that function may give a server access to its member's secrets",
    );
  return problems;
}
