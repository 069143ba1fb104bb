import type { z } from 'zod';
import type { Caller, Role } from '../core/caller.js';
import type { OriginalMessage, Reply } from '../core/chat.js';
import type { LimitClass } from '../core/command-limits.js';

/** Who may run a command: `anyone`, or exactly the given role (users and admins are distinct audiences). */
export type Requirement = 'anyone' | Exclude<Role, 'guest'>;

export interface CommandInput<Args> {
  caller: Caller;
  args: Args;
  reply: Reply;
  /** The caller's own message, for commands that carry a secret in it. */
  original: OriginalMessage;
  /** Adds what came of the action (job id, command ids, outcome) to its audit record. */
  audit(detail: AuditDetail): void;
  /**
   * For a button press: takes the message's buttons away, false when another press got there
   * first. Typed commands always get true. Called by the dispatcher unless `claimsPress` is set.
   */
  claim(): Promise<boolean>;
  /**
   * A `launch` command says its launch was queued: only then do the caller's launch cooldown and
   * daily quota stay charged. Does nothing for other commands and for callers without limits.
   */
  launched(): void;
}

export interface AuditDetail {
  jobId?: string;
  commandIds?: string;
  outcome?: string;
}

/**
 * A command is written once and served by every adapter. `args` parses the raw text after the
 * command name; a parse failure becomes a usage message, so `run` only ever sees valid input.
 */
export interface Command<Deps, Schema extends z.ZodType<unknown, string> = z.ZodType<unknown, string>> {
  name: string;
  aliases?: string[];
  summary: string;
  /** Shown after the name in /help and in usage errors, e.g. `<version> [targets]`. */
  usage?: string;
  args: Schema;
  requires: Requirement;
  /** Hidden commands (button targets) are left out of /help but checked like any other. */
  hidden?: boolean;
  /** The message is deleted before anything else, because its arguments may hold a secret. */
  deletesMessage?: boolean;
  /**
   * The command checks its own conditions (a plan still pending, another approver) before calling
   * `claim()`, so a press it refuses leaves the buttons in place.
   */
  claimsPress?: boolean;
  /** Changes nothing, so an allowed run is not audited (denials always are). */
  readOnly?: boolean;
  /**
   * How a member running it is limited (src/core/command-limits.ts), checked by the dispatcher
   * before `run`. Every member command that is not `readOnly` declares one; admins are never limited.
   */
  limit?: LimitClass;
  /**
   * Read-only refusals (a UserError) that come before the launch limits: a member who already has
   * a server hears that, not a cooldown. Runs after the per-minute and hourly limits are checked.
   */
  check?(input: Pick<CommandInput<z.output<Schema>>, 'caller' | 'args'>, deps: Deps): Promise<void>;
  run(input: CommandInput<z.output<Schema>>, deps: Deps): Promise<void>;
}

export function defineCommand<Deps, Schema extends z.ZodType<unknown, string>>(
  command: Command<Deps, Schema>,
): Command<Deps, Schema> {
  return command;
}

export function mayRun(requirement: Requirement, caller: Caller): boolean {
  return requirement === 'anyone' || requirement === caller.role;
}
