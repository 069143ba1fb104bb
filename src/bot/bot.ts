import type { Fleet } from '../aws/fleet.js';
import type { FleetView } from '../aws/fleet-view.js';
import type { RunCommand } from '../aws/run-command.js';
import type { SecretStore } from '../aws/secret-store.js';
import type { Config } from '../config.js';
import { type Caller, createRoleOf } from '../core/caller.js';
import type { Reply } from '../core/chat.js';
import type { ManagedBotReport } from '../core/managed-bots.js';
import type { Queues } from '../jobs/queues.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { createAssistantBots } from '../store/assistant-bots.js';
import type { AuditTrail } from '../store/audit.js';
import { createMemberLimits } from '../store/member-limits.js';
import type { Members } from '../store/members.js';
import { createPendingSecrets } from '../store/pending-secrets.js';
import { createPlans } from '../store/plans.js';
import { createPacer, createWindowLimit } from '../store/rate-limits.js';
import type { RedisClient } from '../store/redis.js';
import { createSeenUpdates } from '../store/seen-updates.js';
import { allCommands } from './commands/index.js';
import type { BotDeps } from './deps.js';
import { createDispatcher, type Dispatch } from './dispatch.js';
import { adoptAssistantBot } from './intake/assistant-bot.js';
import { takeSecret } from './intake/intake.js';
import { createLiveChecks } from './intake/live-checks.js';
import { createRegistry } from './registry.js';

export interface Bot {
  dispatch: Dispatch;
  /** Filled in once the Telegram bot knows its own username (for invite links). */
  settings: BotDeps['settings'];
  /** Filled in by the Telegram adapter once it started. */
  telegram: BotDeps['telegram'];
  /** Telegram reported a managed bot of this caller (created with the button, or a new token). */
  onManagedBot(event: ManagedBotReport & { caller: Caller | Promise<Caller>; reply: Reply }): Promise<void>;
  /** The commands each audience sees in a platform's command menu. */
  menus: Record<'guest' | 'member', MenuEntry[]>;
}

export interface MenuEntry {
  command: string;
  description: string;
}

/**
 * The platform-free half of the bot role: every command and the dispatcher all adapters share.
 * Plain text in a chat is always treated as a pasted secret: deleted first, then recognized.
 */
export function createBot(
  config: Config,
  clients: {
    redis: RedisClient;
    secrets: SecretStore;
    queues: Queues;
    members: Members;
    fleet: Fleet;
    /** Built by the caller so a dashboard in the same process shares its reads. */
    fleetView: FleetView;
    runCommand: RunCommand;
    auditTrail: AuditTrail;
    metrics?: Pick<Metrics, 'secretStored' | 'commandRefused'>;
  },
  log: Logger,
): Bot {
  const { redis, secrets } = clients;
  const prefix = config.redis.prefix;
  const settings: BotDeps['settings'] = {
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
  const telegram: BotDeps['telegram'] = {};
  const roleOf = createRoleOf(config.access, (id) => clients.members.isMember(id));
  const deps: BotDeps = {
    registry: createRegistry<BotDeps>(allCommands),
    queues: clients.queues,
    members: clients.members,
    isMember: async (userId) => (await roleOf({ platform: 'telegram', userId })) === 'user',
    fleet: clients.fleet,
    fleetView: clients.fleetView,
    runCommand: clients.runCommand,
    plans: createPlans(redis, prefix),
    auditTrail: clients.auditTrail,
    // Keyed with our own token: a digest nobody without it can check a guessed token against.
    assistantBots: createAssistantBots(redis, prefix, config.telegram?.token ?? 'no-telegram'),
    telegram,
    secrets,
    pending: createPendingSecrets(redis, prefix),
    intake: {
      secrets,
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
      metrics: clients.metrics,
      fleet: clients.fleet,
    },
    settings,
    now: () => new Date(),
  };
  const seen = createSeenUpdates(redis, prefix);
  const dispatch = createDispatcher(deps.registry, deps, log, {
    audit: (entry) => clients.auditTrail.record(entry),
    limits: { members: createMemberLimits(redis, prefix, config.limits), settings: config.limits },
    refusals: {
      record: (entry, window) => clients.auditTrail.recordRefusal(entry, window),
      windowMs: config.limits.refusalWindowMs,
      guestReplies: config.limits.guestRepliesPerWindow,
    },
    metrics: clients.metrics,
    claimPress: (m) => seen.first('press', `${m.platform}:${m.chatId}:${m.messageId}`),
    async onText({ caller, text, reply, original }) {
      const kind = caller.role === 'user' ? await deps.pending.take(caller.userId) : undefined;
      await takeSecret({ caller, value: text, kind, original, reply }, deps.intake);
    },
  });
  const menuOf = (role: 'guest' | 'user'): MenuEntry[] =>
    deps.registry
      .visibleTo({ platform: 'telegram', userId: '', displayName: '', role })
      // Telegram menus take only a-z, 0-9 and _; those commands stay typable and listed by /help.
      .filter((c) => /^[a-z0-9_]{1,32}$/.test(c.name))
      .map((c) => ({ command: c.name, description: c.summary.slice(0, 256) }));
  return {
    dispatch,
    settings,
    telegram,
    menus: { guest: menuOf('guest'), member: menuOf('user') },
    async onManagedBot({ bot, report, reply, ...event }) {
      const managedBots = telegram.managedBots;
      if (!managedBots) return;
      try {
        // Inside the try: a role that cannot be read (Redis away) is answered like any other failure.
        const caller = await event.caller;
        await adoptAssistantBot(caller, { bot, report }, reply, { ...deps, managedBots });
      } catch (error) {
        log.error(
          { user: reply.address.chatId, managedBot: bot.botId, err: String(error) },
          'managed bot not adopted',
        );
        await reply
          .send(
            `Your assistant's bot @${bot.username} exists, but I could not store its token just now. Send /rotate telegram-bot-token in a minute.`,
          )
          .catch(() => undefined);
      }
    },
  };
}
