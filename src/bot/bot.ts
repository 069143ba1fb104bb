import type { Caller } from '../core/caller.js';
import type { Reply } from '../core/chat.js';
import type { ManagedBotReport } from '../core/managed-bots.js';
import type { Logger } from '../log.js';
import type { SeenUpdates } from '../store/seen-updates.js';
import type { BotDeps } from './deps.js';
import { createDispatcher, type Dispatch, type DispatchOptions } from './dispatch.js';
import { adoptAssistantBot } from './intake/assistant-bot.js';
import { takeSecret } from './intake/intake.js';

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
 * The role's composition (src/roles/bot.ts) builds the deps; this only decides what they serve.
 */
export function createBot(
  deps: BotDeps,
  options: Omit<DispatchOptions, 'claimPress' | 'onText'> & { seen: SeenUpdates },
  log: Logger,
): Bot {
  const { seen, ...dispatchOptions } = options;
  const { settings, telegram } = deps;
  const dispatch = createDispatcher(deps.registry, deps, log, {
    ...dispatchOptions,
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
