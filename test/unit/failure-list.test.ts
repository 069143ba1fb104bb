import { describe, expect, it } from 'vitest';
import type { InvocationStatus } from '../../src/core/ports/run-command.js';
import { failureThread } from '../../src/jobs/failure-list.js';

const ids = (count: number) =>
  Array.from({ length: count }, (_, i) => [`i-${i.toString(16).padStart(17, '0')}`, 'failed'] as const);
const owners = (failed: readonly (readonly [string, InvocationStatus])[]) =>
  new Map(failed.map(([id], i) => [id, String(50_000 + i)]));

describe('the failure list thread', () => {
  it('when a few instances failed, then one message lists each with its user and fetched output', () => {
    const failed = ids(3);
    const [message, ...rest] = failureThread(
      'rollout-1',
      failed,
      [{ userId: '50000', instanceId: failed[0]?.[0] ?? '', status: 'failed', output: 'exit 3' }],
      owners(failed),
    );
    expect(rest).toEqual([]);
    expect(message?.split('\n')).toEqual([
      'Failed instances of job rollout-1 (3):',
      `• 50000 ${failed[0]?.[0]} failed: exit 3`,
      `• 50001 ${failed[1]?.[0]} failed`,
      `• 50002 ${failed[2]?.[0]} failed`,
    ]);
  });

  it('when hundreds failed, then every one is listed across messages that each fit a chat message', () => {
    const failed = ids(300);
    const messages = failureThread('rollout-2', failed, [], owners(failed));
    expect(messages.length).toBeGreaterThan(1);
    for (const m of messages) expect(m.length).toBeLessThanOrEqual(2800);
    const listed = messages.flatMap((m) =>
      [...m.matchAll(/^• \d+ (i-[0-9a-f]+) failed$/gm)].map((x) => x[1]),
    );
    expect(listed).toEqual(failed.map(([id]) => id));
  });

  it('when more failed than ten messages hold, then the last message points to /job for the rest', () => {
    const failed = ids(2000);
    const messages = failureThread('rollout-3', failed, [], owners(failed));
    expect(messages).toHaveLength(10);
    const listed = messages.reduce((n, m) => n + [...m.matchAll(/^• /gm)].length, 0);
    expect(messages.at(-1)).toMatch(new RegExp(`\\n… and ${2000 - listed} more: /job rollout-3$`));
    expect(listed).toBeGreaterThan(500);
  });
});
