import type { Stage } from '../core/provision-stages.js';
import { type RolloutRequest, rolloutTitle } from '../core/rollout-request.js';
import { looksSecret } from '../core/secret-kinds.js';
import type { RolloutPayload } from './queues.js';
import { type Unreachable, unreachableIn } from './reachability.js';

/**
 * What a job's own chat message says when an attempt fails: either that it will retry, or that it
 * failed for good, why, and what was and was not done. /job renders a failed rollout with the same
 * functions, from the job's stored reason, so the channel and /job never disagree.
 */

/** Where the attempt stands in BullMQ's count: `attempt` of `attempts`, and whether no retry follows. */
export interface AttemptInfo {
  attempt: number;
  attempts: number;
  final: boolean;
}

const maxReasonLength = 200;

/**
 * An error's message as one short line fit for a chat: AWS and the platforms may echo request
 * values (a token in a parameter, say) back in their messages, so secret-shaped words are masked
 * before anything is cut, and a half-cut secret can never survive.
 */
export function failureReason(error: unknown): string {
  const raw = error instanceof Error ? error.message : typeof error === 'string' ? error : '';
  const line = raw
    .split('\n')
    .map((l) => l.trim())
    .find(Boolean);
  if (!line) return 'no reason was given';
  const masked = line
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed.
    .replace(/[\u0000-\u001f\u007f]/g, ' ')
    .split(/\s+/)
    .map((word) => (looksSecret(word) ? '[redacted]' : word))
    .join(' ');
  // A secret split by spaces would slip past the word check: then nothing of the line is shown.
  if (looksSecret(masked)) return 'an error whose text looked like a secret (see the worker log)';
  return masked.length > maxReasonLength ? `${masked.slice(0, maxReasonLength - 1)}…` : masked;
}

type Batches = NonNullable<RolloutPayload['batches']>;

/** A rollout's record as far as it can be trusted: any part may be missing on a job that never ran. */
export interface RolloutRecord {
  request?: RolloutRequest;
  batches?: Batches;
  skipped?: string[];
  unreachable?: Record<string, Unreachable>;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : word.endsWith('ch') ? 'es' : 's'}`;

/** Batches sent, instances reached, instances never sent: from the record the job keeps of each send. */
export function rolloutDone(record: RolloutRecord, final: boolean): string {
  const batches = record.batches;
  if (!batches) return final ? 'Nothing was sent: no batch had been planned.' : 'Nothing was sent yet.';
  const unreachable = unreachableIn(record);
  const total = batches.reduce((n, b) => n + b.instanceIds.length, 0);
  const sent = batches.filter((b) => b.commandId);
  const reached = sent.reduce((n, b) => n + b.instanceIds.filter((id) => !unreachable.has(id)).length, 0);
  const gone = batches.reduce((n, b) => n + b.instanceIds.filter((id) => unreachable.has(id)).length, 0);
  const notSent = total - reached;
  // `sending` is written before SendCommand and stays when the attempt fails at that send: SSM
  // answered it with an error, so it counts as never sent. (Only a retry, which looks the send up
  // by its comment first, could tell a send that ran despite a 5xx; a failed job says which batch.)
  const cutShort = batches.filter((b) => b.state === 'sending').length;
  const detail = [
    gone > 0 ? `${gone} not reachable` : '',
    cutShort > 0 ? `${plural(cutShort, 'batch')} whose send failed` : '',
  ].filter(Boolean);
  return `${reached} of ${plural(total, 'instance')} reached (${sent.length} of ${plural(batches.length, 'batch')} sent); ${notSent} ${final ? 'never sent' : 'not sent yet'}${detail.length > 0 ? ` (${detail.join(', ')})` : ''}.${
    reached > 0 ? ' Commands already sent keep running on their instances.' : ''
  }`;
}

/**
 * A rollout's message after a failed attempt. `refused` is the worker turning the job down before
 * any AWS call (a bad version, an approver who is not an admin): nothing was ever sent.
 */
export function rolloutFailureText(input: {
  jobId: string;
  record: RolloutRecord;
  reason: string;
  attempt?: AttemptInfo;
  refused?: boolean;
}): string {
  const { jobId, record, reason, attempt } = input;
  const title = record.request ? rolloutTitle(record.request) : 'Rollout';
  const final = attempt?.final ?? true;
  const head = input.refused
    ? `${title} (job ${jobId}): refused by the worker: ${reason}`
    : final
      ? `${title} (job ${jobId}): failed: ${reason}`
      : `${title} (job ${jobId}): hit an error on attempt ${attempt?.attempt} of ${attempt?.attempts} and will retry: ${reason}`;
  return `${head}\n${input.refused ? 'Nothing was sent.' : rolloutDone(record, final)}`;
}

/**
 * A provision's message after a failed attempt that the processor did not explain itself: the
 * stage it had reached, and whether a server exists (a retry adopts it; nothing removes it).
 */
export function provisionFailureText(input: {
  jobId: string;
  mode: 'provision' | 'start';
  stage?: Stage;
  instanceId?: string;
  reason: string;
  attempt?: AttemptInfo;
}): string {
  const { attempt, instanceId, stage } = input;
  const final = attempt?.final ?? true;
  const what = input.mode === 'start' ? 'Starting your server' : 'Setting up your server';
  const head = final
    ? `${what} failed (job ${input.jobId}): ${input.reason}`
    : `${what} hit an error on attempt ${attempt?.attempt} of ${attempt?.attempts} and will retry (job ${input.jobId}): ${input.reason}`;
  const reached = stage ? `It got as far as ${stage}.` : 'It stopped before its first stage.';
  const server = instanceId
    ? `Your server ${instanceId} exists${final ? ' but may not be ready: /status shows it.' : '.'}`
    : input.mode === 'start'
      ? 'No server was started.'
      : `No server was launched${final ? '; you can try /provision again later' : ''}.`;
  return `${head}\n${reached} ${server}`;
}
