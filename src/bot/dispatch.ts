import { randomBytes } from 'node:crypto';
import { type AuditRecord, sanitizeArgs } from '../core/audit.js';
import type { Caller } from '../core/caller.js';
import { nothingToDelete, type OriginalMessage, type Reply } from '../core/chat.js';
import { UserError } from '../core/errors.js';
import { looksSecret } from '../core/secret-kinds.js';
import type { Logger } from '../log.js';
import { type AuditDetail, mayRun } from './command.js';
import type { Registry } from './registry.js';

export interface ChatRequest {
  caller: Caller;
  text: string;
  reply: Reply;
  /** Absent where the platform shows no message to delete (Slack commands, button presses). */
  original?: OriginalMessage;
  /** The platform's id of this update (Telegram update_id, Slack trigger_id), for the logs. */
  updateId?: string;
}

export type Outcome = 'ran' | 'text' | 'unknown' | 'denied' | 'invalid' | 'failed';

export interface DispatchOptions {
  /** Where every decision about a state-changing command is recorded. */
  audit?: (entry: Omit<AuditRecord, 'at'>) => Promise<void>;
  /** Plain text that is not a command; without a handler the caller is pointed to /help. */
  onText?: (request: ChatRequest & { original: OriginalMessage }) => Promise<void>;
}

export type Dispatch = (request: ChatRequest) => Promise<Outcome>;

// Telegram appends @botname in groups; Slack sends the name separately and adapters prepend it.
const commandLine = /^\/([A-Za-z][A-Za-z0-9_-]{0,31})(?:@[A-Za-z0-9_]{1,64})?(?:\s+([\s\S]*))?$/;

/** Parses a line, checks role and arguments, runs the command, and always answers. */
export function createDispatcher<Deps>(
  registry: Registry<Deps>,
  deps: Deps,
  baseLog: Logger,
  options: DispatchOptions = {},
): Dispatch {
  return async ({ caller, text, reply, original = nothingToDelete, updateId }) => {
    // One child logger per update: every line about it carries who sent it and which update it was.
    const log = baseLog.child({
      platform: caller.platform,
      user: caller.userId,
      role: caller.role,
      ...(updateId ? { update: updateId } : {}),
    });
    const trimmed = text.trim();
    if (!trimmed.startsWith('/')) {
      if (options.onText) await options.onText({ caller, text, reply, original });
      else await reply.send('I understand commands. Send /help to see what you can do.');
      return 'text';
    }
    const match = commandLine.exec(trimmed);
    const name = match?.[1]?.toLowerCase();
    const command = name ? registry.find(name) : undefined;
    // A secret pasted into a command line (even a mistyped one) must not stay in the chat.
    if (looksSecret(trimmed) || command?.deletesMessage) await original.delete();
    const audit = async (decision: string, detail: AuditDetail = {}) => {
      if (!options.audit || !command) return;
      await options
        .audit({
          platform: caller.viaConsole ? `${caller.platform} (console)` : caller.platform,
          actor: caller.userId,
          command: command.name,
          args: sanitizeArgs(match?.[2] ?? '', command.deletesMessage),
          decision,
          ...detail,
        })
        .catch((err: unknown) => log.error({ err: String(err) }, 'audit record failed'));
    };
    if (!command || !name) {
      log.info({ command: name ?? null }, 'unknown command');
      await reply.whisper(
        `I don't know ${name ? `/${name}` : 'that command'}. Send /help to see what you can do.`,
      );
      return 'unknown';
    }
    if (!mayRun(command.requires, caller)) {
      log.warn({ command: command.name }, 'command denied');
      await audit(`denied: needs ${command.requires}, caller is ${caller.role}`);
      await reply.whisper(
        command.requires === 'admin'
          ? `/${command.name} is for fleet admins only.`
          : caller.role === 'guest'
            ? `/${command.name} is for members only. Ask an admin for an invite.`
            : `/${command.name} is for end users in the Telegram bot.`,
      );
      return 'denied';
    }
    const parsed = command.args.safeParse(match?.[2] ?? '');
    if (!parsed.success) {
      const why = parsed.error.issues[0]?.message ?? 'invalid arguments';
      await reply.whisper(`${why}\nUsage: /${command.name}${command.usage ? ` ${command.usage}` : ''}`);
      if (!command.readOnly) await audit('rejected: invalid arguments');
      return 'invalid';
    }
    const detail: AuditDetail = {};
    try {
      await command.run(
        { caller, args: parsed.data, reply, original, audit: (d) => Object.assign(detail, d) },
        deps,
      );
      log.info({ command: command.name }, 'command ran');
      if (!command.readOnly) await audit('allowed', { outcome: 'ok', ...detail });
      return 'ran';
    } catch (error) {
      if (error instanceof UserError) {
        await reply.whisper(error.message);
        if (!command.readOnly)
          await audit('allowed', { ...detail, outcome: `refused: ${error.message.slice(0, 200)}` });
        return 'failed';
      }
      const ref = randomBytes(4).toString('hex');
      log.error({ command: command.name, ref, err: error }, 'command failed');
      await audit('allowed', { ...detail, outcome: `error (ref ${ref})` });
      await reply.whisper(
        `Something went wrong running /${command.name} (ref ${ref}). An operator can look it up.`,
      );
      return 'failed';
    }
  };
}
