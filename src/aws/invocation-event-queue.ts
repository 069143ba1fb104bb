import { setTimeout as sleep } from 'node:timers/promises';
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { z } from 'zod';
import type { InvocationEvent } from '../core/ports/invocation-events.js';
import type { Logger } from '../log.js';
import { statusOf } from './run-command.js';

/**
 * Run Command's status-change events, as an EventBridge rule delivers them to SQS (infra/fleetbot.yaml,
 * RolloutEventsRule): each message body is the event itself. Shape per "Amazon EventBridge event
 * examples from Systems Manager" (EC2 Command Invocation Status-change Notification):
 * https://docs.aws.amazon.com/systems-manager/latest/userguide/monitoring-systems-manager-event-examples.html
 */
const invocationEvent = z.object({
  source: z.literal('aws.ssm'),
  'detail-type': z.literal('EC2 Command Invocation Status-change Notification'),
  detail: z.object({
    'command-id': z.string().min(1),
    'instance-id': z.string().min(1),
    status: z.string().min(1),
  }),
});

/** The event a message carries, or undefined for anything else (a stray test message, another event). */
export function parseInvocationEvent(body: string | undefined): InvocationEvent | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body ?? '');
  } catch {
    return undefined;
  }
  const parsed = invocationEvent.safeParse(json);
  if (!parsed.success) return undefined;
  const { detail } = parsed.data;
  // The event's status has no StatusDetails beside it; "Undeliverable" and "Terminated" stand alone.
  const status =
    detail.status === 'Undeliverable' || detail.status === 'Terminated'
      ? 'undeliverable'
      : statusOf(detail.status, undefined);
  return { commandId: detail['command-id'], instanceId: detail['instance-id'], status };
}

export interface EventQueueReceiver {
  stop(): Promise<void>;
}

// ReceiveMessage's longest wait (SQS API reference, WaitTimeSeconds: 0 to 20): few empty receives.
const longPollSeconds = 20;
const maxBackoffMs = 30_000;
// ReceiveMessage's MaxNumberOfMessages at most (SQS API reference: 1 to 10).
const maxMessages = 10;
// One receive carries at most 10 messages, and each takes a round trip plus a delete: a few
// receivers side by side keep up with a fleet finishing hundreds of instances a second.
const receivers = 4;
// A rollout acts on events at most every 100 ms (src/jobs/rollout.ts), so a receive that found less
// than a full batch waits that long before the next: what finished meanwhile comes in one receive
// and one delete. Four receivers each taking every event the moment it landed made a receive and a
// delete for about every event (1,572 SQS calls for a rollout of 1,000 instances, against about 450
// this way), each a full SDK request's worth of garbage.
const gatherMs = 100;

/**
 * Long-polls the queue until stopped and hands each received batch's events to `publish`, then
 * deletes them. A batch that could not be published stays on the queue and comes back after its
 * visibility timeout (and, past the queue's maxReceiveCount, lands in its dead-letter queue).
 * Messages that carry no invocation event are deleted: they would only come back.
 *
 * One receiver long-polls; the others join only while receives come back full (the queue is behind),
 * and never wait on an empty queue.
 */
export function receiveInvocationEvents(options: {
  sqs: SQSClient;
  queueUrl: string;
  publish(events: InvocationEvent[]): Promise<void>;
  log: Logger;
}): EventQueueReceiver {
  const { sqs, queueUrl, publish, log } = options;
  const controller = new AbortController();
  const pause = (ms: number) => sleep(ms, undefined, { signal: controller.signal }).catch(() => undefined);
  // Set by the last receive that came back full: more is waiting than one receiver takes.
  let behind = false;
  const receive = async (_: unknown, index: number) => {
    const helper = index > 0;
    let failures = 0;
    while (!controller.signal.aborted) {
      if (helper && !behind) {
        await pause(gatherMs);
        continue;
      }
      try {
        const { Messages: messages = [] } = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: queueUrl,
            MaxNumberOfMessages: maxMessages,
            WaitTimeSeconds: helper ? 0 : longPollSeconds,
          }),
          { abortSignal: controller.signal },
        );
        behind = messages.length === maxMessages;
        if (messages.length === 0) continue;
        const events = messages.flatMap((m) => parseInvocationEvent(m.Body) ?? []);
        if (events.length < messages.length)
          log.warn(
            { ignored: messages.length - events.length },
            'rollout events queue: messages without an invocation event',
          );
        await publish(events);
        await sqs.send(
          new DeleteMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })),
          }),
        );
        failures = 0;
        if (!behind) await pause(gatherMs);
      } catch (err) {
        if (controller.signal.aborted) break;
        failures++;
        const waitMs = Math.min(maxBackoffMs, 500 * 2 ** Math.min(failures, 10));
        log.warn({ err, waitMs }, 'rollout events queue: receive failed; rollouts poll meanwhile');
        await pause(waitMs);
      }
    }
  };
  const loops = Array.from({ length: receivers }, receive);
  return {
    async stop() {
      controller.abort();
      await Promise.all(loops);
    },
  };
}
