import { randomBytes } from 'node:crypto';
import { type AuditRecord, sanitizeArgs } from '../core/audit.js';
import type { Caller } from '../core/caller.js';
import { type MessageRef, nothingToDelete, type OriginalMessage, type Reply } from '../core/chat.js';
import {
  type LimitRefusal,
  type LimitSettings,
  limitRefusalText,
  type RefusalReason,
  slowDownText,
} from '../core/command-limits.js';
import { UserError } from '../core/errors.js';
import { looksSecret } from '../core/secret-kinds.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { AuditTrail } from '../store/audit.js';
import type { MemberLimits } from '../store/member-limits.js';
import { isRedisUnreachable } from '../store/redis.js';
import { type AuditDetail, mayRun } from './command.js';
import { guestTextAnswer } from './intake/intake.js';
import type { AnyCommand, Registry } from './registry.js';

export interface ChatRequest {
  /**
   * Who sent it. An adapter may pass the lookup itself: a role that cannot be read (Redis away) is
   * then answered like any other job-store failure instead of failing outside the dispatcher.
   */
  caller: Caller | Promise<Caller>;
  text: string;
  reply: Reply;
  /** Absent where the platform shows no message to delete (Slack commands, button presses). */
  original?: OriginalMessage;
  /** The platform's id of this update (Telegram update_id, Slack trigger_id), for the logs. */
  updateId?: string;
  /** The request is a press of one of fleetbot's buttons on this message. */
  pressed?: PressedButton;
}

export interface PressedButton {
  message: MessageRef;
  /** The message's text as the presser saw it, kept when its buttons are taken away. */
  text: string;
  label: string;
}

export type Outcome =
  | 'ran'
  | 'text'
  | 'unknown'
  | 'denied'
  | 'limited'
  | 'invalid'
  | 'failed'
  | 'unavailable';

export interface DispatchOptions {
  /** Where every decision about a state-changing command is recorded. */
  audit?: (entry: Omit<AuditRecord, 'at'>) => Promise<void>;
  /**
   * True for the first press on a message's buttons, in every bot process (Redis SET NX).
   */
  claimPress?: (message: MessageRef) => Promise<boolean>;
  /** Members' command limits (each command's `limit`); without them nothing is limited. */
  limits?: { members: MemberLimits; settings: LimitSettings };
  /**
   * Refused commands of anyone but admins: one audit record per sender and window carrying the
   * count, and a reply budget for guests. Without it every refusal is audited and answered.
   */
  refusals?: {
    record: AuditTrail['recordRefusal'];
    windowMs: number;
    /** Refusals a guest is answered per window; the next one is told to slow down, later ones get nothing. */
    guestReplies: number;
  };
  metrics?: Pick<Metrics, 'commandRefused'>;
  /** Plain text that is not a command; without a handler the caller is pointed to /help. */
  onText?: (
    request: Omit<ChatRequest, 'caller'> & { caller: Caller; original: OriginalMessage },
  ) => Promise<void>;
}

export type Dispatch = (request: ChatRequest) => Promise<Outcome>;

const storeDown = 'fleetbot cannot reach its job store right now';
export const unavailableAnswers = {
  started: `${storeDown}, so nothing was started. Try again in a minute.`,
  stored: `${storeDown}, so nothing was stored. I deleted your message: send it again in a minute.`,
  storedNotDeleted: `${storeDown}, so nothing was stored. ⚠️ I could not delete your message. Delete it yourself now and rotate this secret: it is still visible in this chat.`,
};

export const alreadyHandled = 'Somebody already pressed a button on that message; nothing more was done.';

/**
 * The first allowed press on a message wins: its buttons are replaced by what was pressed and by
 * whom, once. Typed commands have no buttons to take, so they always win.
 */
function claimOnce(
  pressed: PressedButton | undefined,
  caller: Caller,
  reply: Reply,
  claimPress: DispatchOptions['claimPress'],
  log: Logger,
): () => Promise<boolean> {
  let won: Promise<boolean> | undefined;
  return () => {
    if (!pressed) return Promise.resolve(true);
    won ??= (async () => {
      const { message } = pressed;
      if (claimPress && !(await claimPress(message))) return false;
      await reply
        .edit(message, `${pressed.text}\n→ ${pressed.label} (by ${caller.displayName})`)
        .catch((err: unknown) => log.warn({ err: String(err) }, 'could not take the buttons away'));
      return true;
    })();
    return won;
  };
}

/** The same reply, remembering every message it posts. */
function remembering(reply: Reply, posted: MessageRef[]): Reply {
  return {
    ...reply,
    async send(message) {
      const ref = await reply.send(message);
      if (ref) posted.push(ref);
      return ref;
    },
  };
}

// Telegram appends @botname in groups; Slack sends the name separately and adapters prepend it.
const commandLine = /^\/([A-Za-z][A-Za-z0-9_-]{0,31})(?:@[A-Za-z0-9_]{1,64})?(?:\s+([\s\S]*))?$/;

/** What a request's text says: a command line (known or not), or plain text. */
interface Line<Deps> {
  trimmed: string;
  /** The command name as typed, lowercased; undefined for plain text and lines that are no command. */
  name?: string;
  command?: AnyCommand<Deps>;
  /** Everything after the name. */
  argsText?: string;
}

function parseLine<Deps>(text: string, registry: Registry<Deps>): Line<Deps> {
  const trimmed = text.trim();
  const match = trimmed.startsWith('/') ? commandLine.exec(trimmed) : null;
  const name = match?.[1]?.toLowerCase();
  return { trimmed, name, command: name ? registry.find(name) : undefined, argsText: match?.[2] };
}

/** One request being handled, once its caller is known: what every step below reads. */
interface Turn<Deps> {
  request: ChatRequest;
  caller: Caller;
  line: Line<Deps>;
  /** The request's reply, remembering what it posts (withdrawn if the job store turns out to be down). */
  reply: Reply;
  original: OriginalMessage;
  log: Logger;
  options: DispatchOptions;
}

/** A member's launch limit as taken for one command: kept only if the command confirms its launch. */
type LimitCharge = Extract<Awaited<ReturnType<MemberLimits['take']>>, { ok: true }>;

/** Parses a line, checks role and arguments, runs the command, and always answers. */
export function createDispatcher<Deps>(
  registry: Registry<Deps>,
  deps: Deps,
  baseLog: Logger,
  options: DispatchOptions = {},
): Dispatch {
  return async (request) => {
    const { original = nothingToDelete, updateId } = request;
    const line = parseLine(request.text, registry);
    const posted: MessageRef[] = [];
    const reply = remembering(request.reply, posted);
    let log = baseLog.child({
      platform: request.reply.address.platform,
      ...(updateId ? { update: updateId } : {}),
    });
    try {
      const caller = await request.caller;
      // One child logger per update: every line about it carries who sent it and which update it was.
      log = baseLog.child({
        platform: caller.platform,
        user: caller.userId,
        role: caller.role,
        ...(updateId ? { update: updateId } : {}),
      });
      return await handle({ request, caller, line, reply, original, log, options }, deps);
    } catch (error) {
      if (!isRedisUnreachable(error)) throw error;
      return answerStoreDown(request, line, original, posted, log, error);
    }
  };
}

/** In order: plain text, an unknown command, a refusal by role, bad arguments, the limits, the run. */
async function handle<Deps>(turn: Turn<Deps>, deps: Deps): Promise<Outcome> {
  const { caller, line, reply, log } = turn;
  if (!line.trimmed.startsWith('/')) return handleText(turn);
  // A secret pasted into a command line (even a mistyped one) must not stay in the chat.
  if (looksSecret(line.trimmed) || line.command?.deletesMessage) await turn.original.delete();
  const { command, name } = line;
  if (!command || !name) {
    log.info({ command: name ?? null }, 'unknown command');
    const answer = `I don't know ${name ? `/${name}` : 'that command'}. Send /help to see what you can do.`;
    // Members and admins mistype; only a guest's stream of unknown commands is worth bounding.
    if (caller.role === 'guest' && turn.options.refusals)
      await refuse(turn, 'unknown_command', 'denied: unknown command', answer);
    else await reply.whisper(answer);
    return 'unknown';
  }
  if (!mayRun(command.requires, caller)) {
    log.warn({ command: command.name }, 'command denied');
    await refuse(
      turn,
      'not_allowed',
      `denied: needs ${command.requires}, caller is ${caller.role}`,
      deniedAnswer(command, caller),
    );
    return 'denied';
  }
  const parsed = command.args.safeParse(line.argsText ?? '');
  if (!parsed.success) {
    const why = parsed.error.issues[0]?.message ?? 'invalid arguments';
    await reply.whisper(`${why}\nUsage: /${command.name}${command.usage ? ` ${command.usage}` : ''}`);
    if (!command.readOnly) await audit(turn, 'rejected: invalid arguments');
    return 'invalid';
  }
  const limits = await takeLimits(turn, command, parsed.data, deps);
  if ('outcome' in limits) return limits.outcome;
  return runCommand(turn, command, parsed.data, limits.charge, deps);
}

/** Plain text: a pasted secret for intake, or, without intake, a pointer to /help. */
async function handleText<Deps>(turn: Turn<Deps>): Promise<Outcome> {
  const { caller, reply, original, options } = turn;
  // A guest's message is deleted like anyone's (it may be a secret), and answered within the
  // guest reply budget, so a flood of text cannot make the bot spam either. One that could not
  // be deleted goes to intake, which tells its sender to revoke what is still visible.
  if (caller.role === 'guest' && options.refusals && options.onText && (await original.delete())) {
    await refuse(turn, 'not_allowed', 'denied: a message from a guest', guestTextAnswer, true);
    return 'text';
  }
  if (options.onText) await options.onText({ caller, text: turn.request.text, reply, original });
  else await reply.send('I understand commands. Send /help to see what you can do.');
  return 'text';
}

function deniedAnswer<Deps>(command: AnyCommand<Deps>, caller: Caller): string {
  if (command.requires === 'admin' && caller.adminChannels)
    return `/${command.name} works only in the fleet admin channels (${caller.adminChannels.join(', ')}), not in this one.`;
  if (command.requires === 'admin') return `/${command.name} is for fleet admins only.`;
  if (caller.role === 'guest') return `/${command.name} is for members only. Ask an admin for an invite.`;
  return `/${command.name} is for end users in the Telegram bot.`;
}

/** Who did what, as the audit trail keeps it; a plain message may be a secret, so none of it is kept. */
function auditEntry<Deps>({ caller, line }: Turn<Deps>, decision: string, plainText = false) {
  const { command } = line;
  return {
    platform: caller.viaConsole ? `${caller.platform} (console)` : caller.platform,
    actor: caller.userId,
    command: command?.name ?? (plainText ? '(message)' : '(unknown)'),
    args: plainText
      ? ''
      : sanitizeArgs(command ? (line.argsText ?? '') : line.trimmed, command?.deletesMessage),
    decision,
  };
}

async function audit<Deps>(turn: Turn<Deps>, decision: string, detail: AuditDetail = {}): Promise<void> {
  if (!turn.options.audit || !turn.line.command) return;
  await turn.options
    .audit({ ...auditEntry(turn, decision), ...detail })
    .catch((err: unknown) => turn.log.error({ err: String(err) }, 'audit record failed'));
}

/**
 * A refusal of anyone but an admin: counted, recorded once per sender and window, and answered
 * (a guest only while within the window's reply budget, so a flood cannot make the bot spam).
 */
async function refuse<Deps>(
  turn: Turn<Deps>,
  reason: RefusalReason,
  decision: string,
  answer: string,
  plainText = false,
): Promise<void> {
  const { caller, reply, options, log } = turn;
  const { command } = turn.line;
  options.metrics?.commandRefused(reason, caller.role);
  const { refusals } = options;
  if (!refusals || caller.role === 'admin') {
    await audit(turn, decision);
    await reply.whisper(answer);
    return;
  }
  const counted = await refusals
    .record(auditEntry(turn, decision, plainText), {
      sender: `${caller.role === 'user' ? 'member' : 'guest'} ${caller.userId}`,
      what: command ? `/${command.name}` : plainText ? 'messages' : 'unknown commands',
      windowMs: refusals.windowMs,
    })
    .catch((err: unknown) => {
      if (isRedisUnreachable(err)) throw err;
      log.error({ err: String(err) }, 'audit record failed');
      return undefined;
    });
  if (caller.role === 'guest' && counted && counted.count > refusals.guestReplies) {
    if (counted.count === refusals.guestReplies + 1)
      await reply.whisper(slowDownText(counted.windowEndsInMs));
    return;
  }
  await reply.whisper(answer);
}

/**
 * Checked after the arguments (bad input costs nothing) and before any effect, a button press
 * included: a refused press leaves the buttons in place. Only members are limited: an admin's
 * /provision-for or /destroy-for acts for a member without spending that member's limits.
 */
async function takeLimits<Deps>(
  turn: Turn<Deps>,
  command: AnyCommand<Deps>,
  args: unknown,
  deps: Deps,
): Promise<{ outcome: Outcome } | { charge: LimitCharge | undefined }> {
  const { caller, reply, log } = turn;
  const limits = command.limit && caller.role === 'user' ? turn.options.limits : undefined;
  if (!limits || !command.limit) return { charge: undefined };
  const member = `${caller.platform}:${caller.userId}`;
  const limited = async (refusal: LimitRefusal) => {
    log.warn({ command: command.name, limit: refusal.reason }, 'command limited');
    await refuse(
      turn,
      refusal.reason,
      `limited: ${refusal.reason.replaceAll('_', ' ')}`,
      limitRefusalText(command.name, refusal, limits.settings),
    );
    return { outcome: 'limited' as const };
  };
  if (command.check) {
    // The budgets first, then the command's own refusals, then the launch limits: "you
    // already have a server" is the truer answer than a cooldown. A refusal of its own still
    // spends the budgets (it read AWS), never a launch.
    const budgets = command.limit === 'launch' ? 'server' : command.limit;
    const early = await limits.members.peek(member, budgets);
    if (early) return limited(early);
    try {
      await command.check({ caller, args }, deps);
    } catch (error) {
      if (!(error instanceof UserError)) throw error;
      await limits.members.take(member, budgets);
      await reply.whisper(error.message);
      await audit(turn, 'allowed', { outcome: `refused: ${error.message.slice(0, 200)}` });
      return { outcome: 'failed' };
    }
  }
  const taken = await limits.members.take(member, command.limit);
  if (!taken.ok) return limited(taken.refusal);
  return { charge: taken };
}

async function runCommand<Deps>(
  turn: Turn<Deps>,
  command: AnyCommand<Deps>,
  args: unknown,
  charge: LimitCharge | undefined,
  deps: Deps,
): Promise<Outcome> {
  const { caller, reply, original, log } = turn;
  const detail: AuditDetail = {};
  const claim = claimOnce(turn.request.pressed, caller, reply, turn.options.claimPress, log);
  try {
    // A press has its effect on the message only once it is allowed: a refused or late press
    // leaves the buttons for whoever may still press them.
    if (!command.claimsPress && !(await claim())) throw new UserError(alreadyHandled);
    await command.run(
      {
        caller,
        args,
        reply,
        original,
        audit: (d) => Object.assign(detail, d),
        claim,
        launched: () => charge?.launched(),
      },
      deps,
    );
    log.info({ command: command.name }, 'command ran');
    if (!command.readOnly) await audit(turn, 'allowed', { outcome: 'ok', ...detail });
    return 'ran';
  } catch (error) {
    // Handled once, for every command, where the caller is answered.
    if (isRedisUnreachable(error)) throw error;
    if (error instanceof UserError) {
      await reply.whisper(error.message);
      if (!command.readOnly)
        await audit(turn, 'allowed', { ...detail, outcome: `refused: ${error.message.slice(0, 200)}` });
      return 'failed';
    }
    const ref = randomBytes(4).toString('hex');
    log.error({ command: command.name, ref, err: error }, 'command failed');
    await audit(turn, 'allowed', { ...detail, outcome: `error (ref ${ref})` });
    await reply.whisper(
      `Something went wrong running /${command.name} (ref ${ref}). An operator can look it up.`,
    );
    return 'failed';
  } finally {
    // A launch the command did not confirm (refused, failed, already queued) is given back.
    await charge
      ?.settle()
      .catch((err: unknown) => log.error({ err: String(err) }, 'launch limit not given back'));
  }
}

/** The one place a job-store outage becomes an answer: say plainly that nothing happened. */
async function answerStoreDown<Deps>(
  request: ChatRequest,
  line: Line<Deps>,
  original: OriginalMessage,
  posted: readonly MessageRef[],
  log: Logger,
  error: unknown,
): Promise<Outcome> {
  const { trimmed, command } = line;
  // Plain text is taken as a pasted secret; so are secret-shaped lines and commands that carry one.
  const carriesSecret = !trimmed.startsWith('/') || looksSecret(trimmed) || Boolean(command?.deletesMessage);
  const deleted = carriesSecret ? await original.delete() : true;
  log.warn(
    { command: command?.name ?? null, err: error instanceof Error ? error.message : String(error) },
    'job store unreachable; nothing was done',
  );
  const answer = carriesSecret
    ? deleted
      ? unavailableAnswers.stored
      : unavailableAnswers.storedNotDeleted
    : unavailableAnswers.started;
  // A message posted before the failure (a plan, a progress line) would promise what never happens.
  for (const ref of posted)
    await request.reply
      .edit(ref, answer)
      .catch((err: unknown) => log.warn({ err: String(err) }, 'could not withdraw a message'));
  if (posted.length === 0) await request.reply.whisper(answer);
  return 'unavailable';
}
