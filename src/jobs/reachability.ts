import { formatElapsed } from '../core/durations.js';
import type { InstanceState } from '../core/ports/fleet.js';
import type { AgentPing } from '../core/ports/run-command.js';

/**
 * Why a planned instance was never sent anything (or its command never reached it). SSM refuses a
 * whole SendCommand when one id is not a node it can reach: "SSM Agent isn't running", "SSM Agent
 * isn't registered with the SSM endpoint", or the node is shutting down or terminated
 * (InvalidInstanceId, SSM API reference). A stopped instance is accepted, and its invocation stays
 * Delayed until the command expires. So each wave is checked against EC2 and SSM right before it is
 * sent, and what cannot be reached is reported, never sent, and never holds the rest.
 */
export const unreachableReasons = [
  'not running',
  'agent offline',
  'agent not registered',
  'refused by SSM',
  'delivery delayed',
] as const;
export type Unreachable = (typeof unreachableReasons)[number];

/** What a job's record says was never reached, and why: older records list such ids (all not running) as `skipped`. */
export function unreachableIn(record: {
  skipped?: readonly string[];
  unreachable?: Readonly<Record<string, Unreachable>>;
}): Map<string, Unreachable> {
  const found = new Map<string, Unreachable>(Object.entries(record.unreachable ?? {}));
  for (const id of record.skipped ?? []) if (!found.has(id)) found.set(id, 'not running');
  return found;
}

/** The instances among `ids` a command cannot reach now, from one look at EC2 and one at SSM. */
export function unreachableAmong(
  ids: readonly string[],
  states: ReadonlyMap<string, InstanceState>,
  agents: ReadonlyMap<string, AgentPing>,
): Map<string, Unreachable> {
  const found = new Map<string, Unreachable>();
  for (const id of ids) {
    if (states.get(id) !== 'running') found.set(id, 'not running');
    else if (!agents.has(id)) found.set(id, 'agent not registered');
    else if (agents.get(id) !== 'Online') found.set(id, 'agent offline');
  }
  return found;
}

function phrase(reason: Unreachable, delayedGiveUpMs: number): string {
  switch (reason) {
    case 'not running':
      return 'no longer running';
    case 'agent offline':
      return 'SSM agent offline';
    case 'agent not registered':
      return 'SSM agent not registered';
    case 'refused by SSM':
      return 'refused by SSM (InvalidInstanceId)';
    case 'delivery delayed':
      return `SSM could not deliver the command within ${formatElapsed(delayedGiveUpMs)}`;
  }
}

/** One line for the summary: how many, grouped by reason, the first few ids of each. */
export function describeUnreachable(
  reasons: ReadonlyMap<string, Unreachable>,
  delayedGiveUpMs: number,
): string | undefined {
  if (reasons.size === 0) return undefined;
  const groups = unreachableReasons.flatMap((reason) => {
    const ids = [...reasons].filter(([, r]) => r === reason).map(([id]) => id);
    if (ids.length === 0) return [];
    const shown = `${ids.slice(0, 10).join(', ')}${ids.length > 10 ? ', …' : ''}`;
    return [`${ids.length} ${phrase(reason, delayedGiveUpMs)} (${shown})`];
  });
  return `not reachable, so never run: ${reasons.size} instance${reasons.size > 1 ? 's' : ''}: ${groups.join('; ')}`;
}
