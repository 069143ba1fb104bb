import { editMessage, type Outboxes } from './outboxes.js';
import type { PingPayload } from './queues.js';

export interface PingDeps {
  outboxes: Outboxes;
  probeAws(): Promise<void>;
  now(): number;
  workerName: string;
}

/**
 * Proves the whole path an admin relies on: chat -> queue -> a worker -> AWS -> the same chat message.
 * AWS trouble is reported in the message rather than thrown, because retrying will not fix it.
 */
export async function processPing(data: PingPayload, deps: PingDeps): Promise<{ aws: 'ok' | 'unreachable' }> {
  const queuedMs = deps.now() - data.requestedAt;
  const started = deps.now();
  let aws: 'ok' | 'unreachable' = 'ok';
  let awsLine: string;
  try {
    await deps.probeAws();
    awsLine = `AWS answered in ${deps.now() - started} ms`;
  } catch (error) {
    aws = 'unreachable';
    awsLine = `AWS did not answer (${error instanceof Error ? error.name : 'error'})`;
  }
  await editMessage(deps.outboxes, data.message, {
    text: `Pong from worker ${deps.workerName}: picked up after ${queuedMs} ms; ${awsLine}.`,
  });
  return { aws };
}
