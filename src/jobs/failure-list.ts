import type { InvocationStatus } from '../core/ports/run-command.js';

export interface FailedInstance {
  userId: string;
  instanceId: string;
  status: string;
  /** The first lines of its error output, where it was fetched. */
  output?: string;
}

/** How many failed instances the summary itself lists; the thread has them all. */
export const failuresInSummary = 15;
// A chat message holds about 3,000 characters; ten of them list several hundred failures.
const threadMessageChars = 2800;
const threadMessages = 10;

export const failureLine = (f: FailedInstance) =>
  `• ${f.userId} ${f.instanceId} ${f.status}${f.output ? `: ${f.output}` : ''}`;

/**
 * Every failed instance, for the summary's thread: messages under the chat's size limit, error
 * output where it was fetched (the first 20), and a pointer to /job past the last message.
 */
export function failureThread(
  jobId: string,
  failedIds: readonly (readonly [string, InvocationStatus])[],
  detailed: readonly FailedInstance[],
  owners: ReadonlyMap<string, string>,
): string[] {
  const lines = failedIds.map(([instanceId, status]) =>
    failureLine(
      detailed.find((f) => f.instanceId === instanceId) ?? {
        userId: owners.get(instanceId) ?? '?',
        instanceId,
        status,
      },
    ),
  );
  const messages: string[] = [];
  let current = `Failed instances of job ${jobId} (${failedIds.length}):`;
  let listed = 0;
  for (const line of lines) {
    if (current.length + line.length + 1 > threadMessageChars) {
      messages.push(current);
      if (messages.length === threadMessages) break;
      current = '';
    }
    current = current ? `${current}\n${line}` : line;
    listed++;
  }
  if (messages.length < threadMessages) messages.push(current);
  else messages[messages.length - 1] += `\n… and ${lines.length - listed} more: /job ${jobId}`;
  return messages;
}
