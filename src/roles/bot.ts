import { type Bot, createBot } from '../bot/bot.js';
import { allCommands } from '../bot/commands/index.js';
import { type ConsoleAdapter, type ConsoleOptions, createConsoleAdapter } from '../bot/console.js';
import type { BotDeps } from '../bot/deps.js';
import { createLiveChecks } from '../bot/intake/live-checks.js';
import { createRegistry } from '../bot/registry.js';
import { createSlackAdapter } from '../bot/slack.js';
import { createTelegramAdapter } from '../bot/telegram.js';
import type { Config } from '../config.js';
import { adminChannelsElsewhere } from '../core/caller.js';
import { openQueues, type Queues } from '../jobs/queues.js';
import type { Logger } from '../log.js';
import { createAssistantBots } from '../store/assistant-bots.js';
import { createMemberLimits } from '../store/member-limits.js';
import { createPendingSecrets } from '../store/pending-secrets.js';
import { createPlans } from '../store/plans.js';
import { createPollLease, telegramPollerKey } from '../store/poll-lease.js';
import { createPacer, createWindowLimit } from '../store/rate-limits.js';
import { createSeenUpdates, slackReplayWindowSeconds } from '../store/seen-updates.js';
import { type RoleContext, runStops, type StartedRole, slackEditBudget } from './context.js';

/** The console chat of the local sandbox: its streams and who types. */
export type ConsoleChat = Pick<ConsoleOptions, 'input' | 'output' | 'identity'>;

export interface StartedBot extends StartedRole {
  ports: { slack?: number; telegramWebhook?: number };
  console?: ConsoleAdapter;
}

/** What commands use, built from the config: the bot role's composition. */
function createBotDeps(ctx: RoleContext, queues: Queues, log: Logger): BotDeps {
  const { config, redis, aws } = ctx;
  const prefix = config.redis.prefix;
  return {
    registry: createRegistry<BotDeps>(allCommands),
    queues,
    members: ctx.members,
    isMember: async (userId) => (await ctx.roleOf({ platform: 'telegram', userId })) === 'user',
    fleet: aws.fleet,
    fleetView: aws.fleetView,
    runCommand: aws.runCommand,
    plans: createPlans(redis, prefix),
    auditTrail: ctx.auditTrail,
    // Keyed with our own token: a digest nobody without it can check a guessed token against.
    assistantBots: createAssistantBots(redis, prefix, config.telegram?.token ?? 'no-telegram'),
    telegram: {},
    secrets: aws.secrets,
    pending: createPendingSecrets(redis, prefix),
    intake: {
      secrets: aws.secrets,
      putPacer: createPacer(
        redis,
        `${prefix}:pace:put-parameter`,
        config.intake.parameterWritesPerSecond,
        log,
      ),
      perUserLimit: createWindowLimit(redis, `${prefix}:intake`, config.intake.perUserPerMinute, 60_000),
      liveChecks: createLiveChecks({
        telegramApiRoot: config.telegram?.apiRoot ?? 'https://api.telegram.org',
        // A bot token starts with its bot's id, so our own token is recognized without a call.
        ownBotId: config.telegram ? Number(config.telegram.token.split(':')[0]) : undefined,
        openAiBaseUrl: config.intake.openAiBaseUrl,
      }),
      log: log.child({ part: 'intake' }),
      now: () => new Date(),
      metrics: ctx.metrics,
      fleet: aws.fleet,
    },
    settings: botSettings(config),
    now: () => new Date(),
  };
}

function botSettings(config: Config): BotDeps['settings'] {
  return {
    inviteTtlMs: config.intake.inviteTtlMs,
    setTimeoutMs: config.intake.setTimeoutMs,
    region: config.aws.region,
    requiredSecrets: config.provisioning.requiredSecrets,
    serviceName: config.instances.serviceName,
    restartDocument: config.provisioning.restartDocument,
    sessionOperatorPolicy: `${config.aws.parameterPrefix}-${config.env}-session-operator`,
    rollout: config.rollout,
    reportChannelId: config.provisioning.alertChannelId,
  };
}

/** The platform-free bot on the role's deps: what every chat adapter dispatches to. */
export function assembleBot(ctx: RoleContext, queues: Queues, log: Logger): Bot {
  const { config, redis } = ctx;
  const prefix = config.redis.prefix;
  return createBot(
    createBotDeps(ctx, queues, log),
    {
      audit: (entry) => ctx.auditTrail.record(entry),
      limits: { members: createMemberLimits(redis, prefix, config.limits), settings: config.limits },
      refusals: {
        record: (entry, window) => ctx.auditTrail.recordRefusal(entry, window),
        windowMs: config.limits.refusalWindowMs,
        guestReplies: config.limits.guestRepliesPerWindow,
      },
      metrics: ctx.metrics,
      seen: createSeenUpdates(redis, prefix),
    },
    log,
  );
}

/** The bot role: commands behind every configured chat. Chat handlers enqueue and answer; workers do the rest. */
export async function startBotRole(ctx: RoleContext, consoleChat?: ConsoleChat): Promise<StartedBot> {
  const { config, redis, log } = ctx;
  const botLog = log.child({ role: 'bot' });
  const queues = openQueues(redis, config.redis.prefix, botLog);
  const bot = assembleBot(ctx, queues, botLog);
  // Chat input stops first, newest first; the queues after it.
  const chatStops: (() => Promise<void>)[] = [];
  const started: StartedBot = {
    ports: {},
    stop: () => runStops([...chatStops, () => queues.close()], log),
  };
  try {
    if (config.telegram) {
      const telegram = await startTelegram(ctx, bot);
      started.ports.telegramWebhook = telegram.webhookPort();
      chatStops.unshift(() => telegram.stop());
    }
    if (config.slack) {
      const slack = await startSlack(ctx, bot);
      started.ports.slack = slack.port();
      chatStops.unshift(() => slack.stop());
    }
    if (consoleChat) {
      const c = createConsoleAdapter({ ...consoleChat, roleOf: ctx.roleOf, dispatch: bot.dispatch });
      started.console = c;
      chatStops.unshift(async () => c.close());
    }
  } catch (error) {
    await started.stop();
    throw error;
  }
  return started;
}

async function startTelegram(ctx: RoleContext, bot: Bot) {
  const { config, redis, log } = ctx;
  if (!config.telegram) throw new Error('startTelegram needs TELEGRAM_BOT_TOKEN');
  const seen = createSeenUpdates(redis, config.redis.prefix);
  const telegramLog = log.child({ chat: 'telegram' });
  const telegram = createTelegramAdapter({
    ...config.telegram,
    roleOf: ctx.roleOf,
    dispatch: bot.dispatch,
    meter: ctx.metrics,
    log: telegramLog,
    // Only one bot process polls at a time; the others take over when it stops or dies.
    pollLease: createPollLease(redis, {
      key: telegramPollerKey(config.redis.prefix),
      ttlMs: config.telegram.pollLeaseMs,
      log: telegramLog,
    }),
    firstDelivery: (updateId) => seen.first('telegram', updateId),
    onManagedBot: (event) => bot.onManagedBot(event),
    menus: bot.menus,
    memberIds: async () => [
      ...new Set([...config.access.telegramUserIds, ...(await ctx.members.list()).map((m) => m.userId)]),
    ],
  });
  await telegram.start();
  bot.settings.botUsername = telegram.bot.botInfo.username;
  bot.telegram.menus = telegram.menus;
  bot.telegram.managedBots = telegram.managedBots();
  return telegram;
}

async function startSlack(ctx: RoleContext, bot: Bot) {
  const { config, redis, log } = ctx;
  if (!config.slack) throw new Error('startSlack needs the Slack settings');
  const seen = createSeenUpdates(redis, config.redis.prefix);
  const slack = createSlackAdapter({
    ...config.slack,
    roleOf: ctx.roleOf,
    adminChannels: (who) => adminChannelsElsewhere(config.access, who),
    firstDelivery: (requestId) => seen.first('slack', requestId, slackReplayWindowSeconds),
    editBudget: slackEditBudget(redis, config),
    dispatch: bot.dispatch,
    meter: ctx.metrics,
    log: log.child({ chat: 'slack' }),
  });
  await slack.start();
  return slack;
}
