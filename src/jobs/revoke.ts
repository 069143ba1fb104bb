import { UnrecoverableError } from 'bullmq';
import { awsErrorCode, transientAwsError } from '../core/aws-errors.js';
import { AwsWaitExpired, createAwsWait, waitingLine } from '../core/aws-wait.js';
import type { Fleet, FleetInstance } from '../core/ports/fleet.js';
import type { SecretStore } from '../core/ports/secret-store.js';
import { secretKindNames } from '../core/secret-kinds.js';
import type { Logger } from '../log.js';
import { editMessage, type Outboxes } from './outboxes.js';
import type { RevokePayload } from './queues.js';

export interface RevokeDeps {
  fleet: Pick<Fleet, 'findForUser' | 'stop'>;
  secrets: Pick<SecretStore, 'unbindFromInstance'>;
  outboxes: Outboxes;
  /** How long throttling, 5xx and network trouble are waited out before the job gives up and says so. */
  awsWaitMs: number;
  log: Logger;
}

/** What an admin presses to terminate the former member's server: the same command as /destroy-for's button. */
export const terminateButton = (userId: string) => `/destroy-for-confirmed ${userId}`;

/**
 * After /revoke: stops the former member's server and removes the InstanceArn tag from their
 * parameters, so neither their assistant nor that instance can read their secrets any more, then asks
 * the admin in the job's message whether to terminate the server too. Every step is safe to repeat
 * (a stopped server is not stopped again, unbinding twice removes nothing more), so a retried job
 * simply runs again. Failures are written into the same message with what was reached.
 */
export async function processRevoke(data: RevokePayload, deps: RevokeDeps): Promise<{ instanceId?: string }> {
  const log = deps.log.child({ user: data.userId, job: 'revoke' });
  const who = `Telegram user ${data.userId}`;
  const edit = (text: string, buttons?: { label: string; command: string; style?: 'danger' }[]) =>
    editMessage(deps.outboxes, data.message, { text, ...(buttons ? { buttons } : {}) });
  // Waiting notices are chained and awaited before the last word, so none can land after it.
  let notices: Promise<void> = Promise.resolve();
  const aws = createAwsWait({
    classify: transientAwsError,
    onChange(trouble) {
      if (!trouble) return;
      log.warn({ aws: trouble.code, kind: trouble.kind }, 'waiting on AWS');
      notices = notices
        .then(() =>
          edit(`Stopping the server of ${who} and unlinking their secrets: ${waitingLine(trouble)}`),
        )
        .catch((err: unknown) => log.warn({ err: String(err) }, 'could not show the wait'));
    },
  });
  const until = Date.now() + deps.awsWaitMs;
  let step = 'looking up their server';
  let server: FleetInstance | undefined;
  try {
    server = await aws.run(() => deps.fleet.findForUser(data.userId), until);
    if (server && (server.state === 'running' || server.state === 'pending')) {
      step = `stopping their server ${server.id}`;
      const id = server.id;
      await aws.run(() => deps.fleet.stop(id), until);
      log.info({ instanceId: id }, 'server stopped after revoke');
    }
    step = 'unlinking their secrets from it';
    // Every kind, not only the required ones: a member may have stored (and bound) any of them.
    await aws.run(() => deps.secrets.unbindFromInstance(data.userId, secretKindNames), until);
    log.info({ instanceId: server?.id ?? null }, 'parameters unbound after revoke');
  } catch (error) {
    const why = error instanceof AwsWaitExpired ? error.message : `AWS answered ${awsErrorCode(error)}`;
    log.warn({ step, instanceId: server?.id ?? null, err: awsErrorCode(error) }, 'revoke cleanup failed');
    await notices;
    await edit(
      `${who} is no longer a member, but ${step} failed (${why}). Send /revoke ${data.userId} again to retry, or /destroy-for ${data.userId} to terminate the server.`,
    );
    // The admin has the answer; a retry would only overwrite it.
    throw new UnrecoverableError(`revoke cleanup failed while ${step}: ${awsErrorCode(error)}`);
  }
  await notices;
  if (!server) {
    await edit(`${who} has no server. Their stored secrets are unlinked from any server.`);
    return {};
  }
  const state = server.state === 'stopped' ? 'stopped' : 'stopping';
  await edit(
    `The server of ${who}, ${server.id}, is ${state} and their secrets are unlinked from it. Terminate it too? Its disk is deleted with it; this cannot be undone.`,
    [
      { label: 'Terminate it', command: terminateButton(data.userId), style: 'danger' },
      { label: 'Keep it stopped', command: '/cancelled' },
    ],
  );
  return { instanceId: server.id };
}
