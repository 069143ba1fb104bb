import { setTimeout as sleep } from 'node:timers/promises';
import { isTransientAwsError } from '../core/aws-errors.js';
import type { RunCommand } from '../core/ports/run-command.js';
import type { Logger } from '../log.js';
import { editMessage, type Outboxes } from './outboxes.js';
import type { RestartPayload } from './queues.js';

export interface RestartDeps {
  runCommand: Pick<RunCommand, 'invocation'>;
  outboxes: Outboxes;
  pollMs: number;
  /** Longer than the restart document's own timeout, so SSM decides first. */
  timeoutMs: number;
  now(): number;
  log: Logger;
}

/**
 * Follows a member's restart command to its end and edits their message with the outcome. The unit
 * reads the member's secrets as it starts, so a failed start names the secret it could not read: the
 * restart document prints the helper's `fleetbot-secrets: failed: …` line.
 */
export async function processRestart(data: RestartPayload, deps: RestartDeps): Promise<{ status: string }> {
  const deadline = deps.now() + deps.timeoutMs;
  let status = 'unconfirmed';
  let output = '';
  while (deps.now() < deadline) {
    await sleep(deps.pollMs);
    const invocation = await deps.runCommand
      .invocation(data.commandId, data.instanceId)
      .catch((error: unknown) => {
        // AWS trouble only delays the answer; anything else is a bug worth failing on.
        if (!isTransientAwsError(error)) throw error;
        deps.log.warn({ err: String(error) }, 'restart status not readable yet');
        return undefined;
      });
    // Delayed: SSM has not reached the agent yet and keeps trying, so the outcome is still open.
    if (!invocation || ['pending', 'delayed', 'running'].includes(invocation.status)) continue;
    status = invocation.status;
    output = invocation.output;
    break;
  }
  await editMessage(deps.outboxes, data.message, { text: outcomeText(data.instanceId, status, output) });
  return { status };
}

function outcomeText(instanceId: string, status: string, output: string): string {
  if (status === 'success') return `Your assistant on ${instanceId} restarted and read your current secrets.`;
  if (status === 'failed') {
    const lines = output.split('\n').filter((l) => l.trim() !== '');
    const why = lines.filter((l) => l.startsWith('fleetbot-secrets:'));
    return `Your assistant on ${instanceId} did not start again:\n${(why.length > 0 ? why : lines.slice(-5)).join('\n').slice(0, 1500)}\nFix what it names (a missing secret: /set it), then /restart.`;
  }
  return `I could not confirm that your assistant on ${instanceId} restarted (the command ${status === 'unconfirmed' ? 'did not finish in time' : `ended ${status}`}). Check /status, then send /restart again.`;
}
