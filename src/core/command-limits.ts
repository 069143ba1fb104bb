/**
 * How members' own commands are limited, and how a refusal is told to a person. Declared once per
 * command (`limit` on its definition) and enforced by the dispatcher before the command runs.
 *
 * - `command`: changes something (a secret, a confirmation, access to the assistant's bot); counts
 *   against the per-minute budget.
 * - `server`: acts on the member's server through EC2 or SSM (stop, start, restart, terminate,
 *   rotate-and-restart); also counts against the hourly budget of server actions, because those
 *   calls share account-wide EC2 and SSM limits with admins' rollouts.
 * - `launch`: launches a server (a billed EC2 instance); also held by a cooldown after each launch
 *   and a daily quota, both charged only when the launch is actually queued.
 */
export type LimitClass = 'command' | 'server' | 'launch';

export type LimitReason =
  | 'commands_per_minute'
  | 'server_actions_per_hour'
  | 'launch_cooldown'
  | 'launch_daily_quota';

/** Why a command was refused, for metrics: a limit, or a caller without the role. */
export type RefusalReason = LimitReason | 'not_allowed' | 'unknown_command';

export interface LimitSettings {
  commandsPerMinute: number;
  serverActionsPerHour: number;
  provisionCooldownMs: number;
  launchesPerDay: number;
}

export interface LimitRefusal {
  reason: LimitReason;
  /** How long until the refusing limit lets this command through again. */
  retryInMs: number;
}

/** `42 s`, `8 min`, `5 h 12 min`, rounded up so "try again in" is never too early. */
export function formatWait(ms: number): string {
  const s = Math.max(1, Math.ceil(ms / 1000));
  if (s < 60) return `${s} s`;
  const min = Math.ceil(s / 60);
  if (min < 60) return `${min} min`;
  const h = Math.floor(min / 60);
  return min % 60 === 0 ? `${h} h` : `${h} h ${min % 60} min`;
}

/** What was refused, why, and when to try again; the command changed nothing. */
export function limitRefusalText(command: string, refusal: LimitRefusal, limits: LimitSettings): string {
  const wait = formatWait(refusal.retryInMs);
  const refused = `/${command} was not run, nothing changed:`;
  switch (refusal.reason) {
    case 'commands_per_minute':
      return `${refused} you can run ${limits.commandsPerMinute} such commands a minute. Try again in ${wait}.`;
    case 'server_actions_per_hour':
      return `${refused} you can act on your server ${limits.serverActionsPerHour} times an hour. Try again in ${wait}.`;
    case 'launch_cooldown':
      return `${refused} a server can be launched once every ${formatWait(limits.provisionCooldownMs)}. You can launch a server again in ${wait}.`;
    case 'launch_daily_quota':
      return `${refused} daily launch limit reached (${limits.launchesPerDay}). Try again after 00:00 UTC (in ${wait}).`;
  }
}

/** The one answer a sender gets once their refused commands in a window are past the reply budget. */
export function slowDownText(windowEndsInMs: number): string {
  return `You sent many commands I cannot run for you, so I will not answer more of them for ${formatWait(windowEndsInMs)}. Ask an admin for an invite if you should be a member.`;
}
