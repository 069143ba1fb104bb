import type { Caller } from '../../core/caller.js';
import type { Reply } from '../../core/chat.js';
import { UserError } from '../../core/errors.js';
import type { AssistantBot, ManagedBotReport, ManagedBots } from '../../core/managed-bots.js';
import type { AssistantBots } from '../../store/assistant-bots.js';
import { type IntakeDeps, offerRestart, type StoreOutcome, storeFailureText, storeSecret } from './intake.js';

export interface AssistantBotDeps {
  intake: IntakeDeps;
  assistantBots: AssistantBots;
  managedBots: ManagedBots;
}

const kind = 'telegram-bot-token';
/** Longer than a replace, a store and a bind take even when AWS is slow; released as soon as they end. */
const rotationLockMs = 2 * 60_000;

/**
 * Telegram reported a managed bot of this member: just created with the button, or its token changed
 * (by /rotate, or by the owner in Telegram). Its token goes straight from Telegram to Parameter Store;
 * a report of a token that is already stored changes nothing, so the `managed_bot` update and the
 * `managed_bot_created` message of one creation store once.
 */
export async function adoptAssistantBot(
  caller: Caller,
  { bot, report }: ManagedBotReport,
  reply: Reply,
  deps: AssistantBotDeps,
): Promise<void> {
  const log = deps.intake.log.child({ user: caller.userId, managedBot: bot.botId });
  if (caller.role !== 'user') {
    log.warn('managed bot created by a non-member; token not fetched');
    await reply.send(
      `I did not take @${bot.username}: only members can have an assistant here. Ask an admin for an invite.`,
    );
    return;
  }
  // fleetbot's own replacement stores the new token itself.
  if (await deps.assistantBots.rotating(caller.userId)) return;
  const known = (await deps.assistantBots.get(caller.userId))?.botId === bot.botId;
  // The second report of a creation already handled; only an update can bring a new token.
  if (known && report === 'created') return;
  const token = await deps.managedBots.token(bot.botId);
  if (await deps.assistantBots.isStored(caller.userId, bot.botId, token)) {
    log.info('managed bot token already stored');
    return;
  }
  const stored = await storeSecret(deps.intake, caller.userId, kind, token);
  if (!stored.ok) {
    await reply.send(
      `Your assistant's bot @${bot.username} exists, but its token is not stored: ${storeFailureText[stored.reason]} Then send /rotate ${kind}.`,
    );
    return;
  }
  const record = await deps.assistantBots.save(caller.userId, bot, token);
  const restricted = await restrict(deps, bot.botId, record.addedUserIds, log);
  await reply.send(
    known
      ? `Your assistant's bot @${bot.username} has a new token; I stored it (${stored.fingerprint}).`
      : `Your assistant's bot @${bot.username} is ready and its token is stored (${stored.fingerprint}); it never appeared in this chat. ${
          restricted
            ? 'Only you can talk to it; /access lets up to 10 more people in.'
            : 'I could not restrict who may talk to it yet: send /access to try again.'
        }`,
  );
  await offerRestart(stored.server, reply);
}

/**
 * Replaces the token of the member's assistant bot: the old token stops working at once, the new one is
 * stored and bound to their server. The caller restarts the assistant so it picks the new one up.
 */
export async function rotateAssistantBot(
  caller: Caller,
  deps: AssistantBotDeps,
): Promise<Extract<StoreOutcome, { ok: true }> & { bot: AssistantBot }> {
  const record = await deps.assistantBots.get(caller.userId);
  if (!record) throw new UserError('I did not create your assistant bot, so I cannot replace its token.');
  if (!(await deps.assistantBots.lockRotation(caller.userId, rotationLockMs)))
    throw new UserError('Your bot token is being replaced already. Wait a minute and check /secrets.');
  try {
    const token = await deps.managedBots.replaceToken(record.botId).catch((error: unknown) => {
      deps.intake.log.warn({ user: caller.userId, err: String(error) }, 'replaceManagedBotToken failed');
      throw new UserError('Telegram did not replace the token, so nothing changed. Try again in a minute.');
    });
    const stored = await storeSecret(deps.intake, caller.userId, kind, token);
    if (!stored.ok)
      throw new UserError(
        `Telegram replaced the token, so the old one no longer works, but the new one is not stored: ${storeFailureText[stored.reason]} Then send /rotate ${kind} again.`,
      );
    await deps.assistantBots.save(caller.userId, record, token);
    return { ...stored, bot: record };
  } finally {
    await deps.assistantBots.unlockRotation(caller.userId);
  }
}

/** Restricts the bot to its owner and the added users; a failure is reported, never thrown. */
export async function restrict(
  deps: AssistantBotDeps,
  botId: number,
  addedUserIds: readonly number[],
  log: IntakeDeps['log'],
): Promise<boolean> {
  try {
    await deps.managedBots.restrictAccess(botId, addedUserIds);
    return true;
  } catch (error) {
    log.warn({ managedBot: botId, err: String(error) }, 'could not restrict the managed bot');
    return false;
  }
}
