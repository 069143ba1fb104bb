import { describe, expect, it } from 'vitest';
import { describeUnreachable, unreachableAmong, unreachableIn } from '../../src/jobs/reachability.js';

describe('which planned instances a command can reach', () => {
  it('when EC2 and SSM have each answered, then only running instances with an online agent are reachable, and each other one says why', () => {
    const found = unreachableAmong(
      ['i-00000001', 'i-00000002', 'i-00000003', 'i-00000004', 'i-00000005'],
      new Map([
        ['i-00000001', 'running'],
        ['i-00000002', 'stopped'],
        ['i-00000003', 'running'],
        ['i-00000004', 'running'],
      ] as const),
      new Map([
        ['i-00000001', 'Online'],
        ['i-00000002', 'ConnectionLost'],
        ['i-00000004', 'ConnectionLost'],
      ] as const),
    );
    expect(Object.fromEntries(found)).toEqual({
      'i-00000002': 'not running',
      'i-00000003': 'agent not registered',
      'i-00000004': 'agent offline',
      // EC2 does not list it at all: terminated long ago.
      'i-00000005': 'not running',
    });
  });

  it('when a job was recorded by an older version, then its skipped instances count as not running', () => {
    expect(
      Object.fromEntries(
        unreachableIn({
          skipped: ['i-00000001', 'i-00000002'],
          unreachable: { 'i-00000002': 'agent offline' },
        }),
      ),
    ).toEqual({ 'i-00000001': 'not running', 'i-00000002': 'agent offline' });
    expect(unreachableIn({}).size).toBe(0);
  });

  it('when the summary names them, then they are grouped by reason in a fixed order with at most ten ids each', () => {
    const many = Array.from({ length: 12 }, (_, i) => `i-${String(i).padStart(8, '0')}`);
    const text = describeUnreachable(
      new Map([
        ...many.map((id) => [id, 'agent not registered'] as const),
        ['i-0000000f', 'delivery delayed'],
        ['i-0000000e', 'not running'],
      ]),
      120_000,
    );
    expect(text).toBe(
      `not reachable, so never run: 14 instances: 1 no longer running (i-0000000e); 12 SSM agent not registered (${many.slice(0, 10).join(', ')}, …); 1 SSM could not deliver the command within 2m00s (i-0000000f)`,
    );
    expect(describeUnreachable(new Map(), 120_000)).toBeUndefined();
  });
});
