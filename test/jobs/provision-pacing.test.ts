import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Fleet, FleetInstance, InstanceHealth } from '../../src/core/ports/fleet.js';
import type { Invocation, RunCommand } from '../../src/core/ports/run-command.js';
import type { SecretStore } from '../../src/core/ports/secret-store.js';
import { createHealthPoller, type HealthPoller } from '../../src/jobs/health-poller.js';
import { type ProvisionDeps, type ProvisionJob, processProvision } from '../../src/jobs/provision.js';
import type { Pacer } from '../../src/store/rate-limits.js';
import { capturedLogger } from '../support/quiet-log.js';

/**
 * How soon a provision notices its server is ready, on a fake clock: the stages after launch (status
 * checks through the shared poller, then the bootstrap check through Run Command) against fakes
 * that answer at known times. The job resumes an instance already recorded and bound, so the launch
 * itself is not involved.
 */

const pollMs = 10_000;
const instance: FleetInstance = {
  id: 'i-0123456789abcdef0',
  arn: 'arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0',
  userId: '4242',
  state: 'running',
  tags: {},
};
const ready: InstanceHealth = { state: 'running', system: 'ok', instance: 'ok' };

/**
 * A fleet whose instance is ready at every status call, and a Run Command whose bootstrap check runs
 * for `checkMs` (half a second, as the real one) and then finds setup done if it finished by then
 * (`setupMs` after the first check was sent), or ends saying it is still running.
 */
function world(options: { setupMs: number; checkMs?: number }) {
  const checkMs = options.checkMs ?? 500;
  const statusCalls: number[] = [];
  const sends: number[] = [];
  const reads: number[] = [];
  let sentAt = 0;
  const fleet = {
    async checkOwner() {
      return { verdict: 'owned' as const, instance };
    },
    async health(ids: readonly string[]) {
      statusCalls.push(Date.now());
      return new Map(ids.map((id) => [id, ready]));
    },
  } as Pick<Fleet, 'checkOwner' | 'health'> as Fleet;
  const runCommand = {
    async send() {
      sentAt = Date.now();
      sends.push(sentAt);
      return `cmd-${sends.length}`;
    },
    async invocation(): Promise<Invocation> {
      reads.push(Date.now());
      if (Date.now() - sentAt < checkMs) return { status: 'running', output: '' };
      return sentAt + checkMs - (sends[0] ?? 0) >= options.setupMs
        ? { status: 'success', output: 'bootstrap: done\n' }
        : { status: 'failed', output: 'bootstrap: running\n' };
    },
  } as Pick<RunCommand, 'send' | 'invocation'> as RunCommand;
  return { fleet, runCommand, statusCalls, sends, reads };
}

let poller: HealthPoller | undefined;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  poller?.stop();
  poller = undefined;
  vi.useRealTimers();
});

function provision(w: ReturnType<typeof world>, settings: { pollMs?: number } = {}) {
  const log = capturedLogger().log;
  const poll = settings.pollMs ?? pollMs;
  poller = createHealthPoller(w.fleet, poll, log);
  const edits: { at: number; text: string }[] = [];
  const deps: ProvisionDeps = {
    fleet: w.fleet,
    runCommand: w.runCommand,
    secrets: {} as SecretStore,
    poller,
    launchPacer: {} as Pacer,
    outboxes: {
      console: {
        send: async () => undefined,
        edit: async (_ref, message) => {
          edits.push({ at: Date.now(), text: message.text });
        },
      },
    },
    settings: {
      parameterPrefix: 'fbpace',
      requiredSecrets: ['telegram-bot-token'],
      onFailure: 'keep',
      pollMs: poll,
      timeoutsMs: { running: 120_000, checks: 120_000, bootstrap: 120_000 },
      bootstrapCheckDocument: 'fleetbot-bootstrap-check',
      serviceName: 'assistant',
      editIntervalMs: 10,
    },
    log,
    // The job's own waits run on the fake clock too.
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  };
  const job: ProvisionJob = {
    id: 'provision-4242',
    timestamp: 1,
    data: {
      userId: instance.userId,
      mode: 'provision',
      requestedBy: 'test',
      startedAt: Date.now(),
      message: { platform: 'console', chatId: 'c', messageId: '1' },
      instanceId: instance.id,
      boundArn: instance.arn,
    },
    updateData: async (next) => {
      job.data = next;
    },
  };
  const outcome: { doneAt?: number; error?: unknown } = {};
  const start = Date.now();
  void processProvision(job, deps).then(
    () => {
      outcome.doneAt = Date.now() - start;
    },
    (error: unknown) => {
      outcome.error = error;
    },
  );
  return { start, edits, outcome };
}

describe('a server that is ready when it is first seen', () => {
  it('when the first status poll finds it running with its checks ok, then the checks stage costs no second status call', async () => {
    const w = world({ setupMs: 0 });
    const run = provision(w);
    await vi.advanceTimersByTimeAsync(pollMs + 5000);
    expect(run.outcome).toEqual({ doneAt: expect.any(Number) });
    expect(w.statusCalls.map((at) => at - run.start)).toEqual([pollMs]);
    // The bootstrap check goes out on the tick that saw the server ready.
    expect(w.sends.map((at) => at - run.start)).toEqual([pollMs]);
    expect(run.edits.at(-1)?.text).toMatch(/^Your server is ready \(instance i-0123456789abcdef0/);
  });

  it('when the bootstrap check ends at once, then its result is read a second after it was sent, not a poll interval', async () => {
    const w = world({ setupMs: 0 });
    const run = provision(w);
    await vi.advanceTimersByTimeAsync(pollMs + 5000);
    expect(run.outcome).toEqual({ doneAt: expect.any(Number) });
    const sent = w.sends[0] ?? Number.NaN;
    expect(w.reads.map((at) => at - sent)).toEqual([1000]);
    // Fake time (vi.useFakeTimers): the bound is the feature, a ready server's check seen within one
    // poll interval of its send, and no busy machine can stretch it.
    expect((run.outcome.doneAt ?? Number.POSITIVE_INFINITY) - (sent - run.start)).toBeLessThan(pollMs);
  });
});

describe('reading the bootstrap check', () => {
  it('when the check is slow to come back, then reads back off, doubling up to the poll interval', async () => {
    // The check runs for 20 s, as when the agent is slow to take it up.
    const w = world({ setupMs: 0, checkMs: 20_000 });
    const run = provision(w);
    await vi.advanceTimersByTimeAsync(pollMs + 60_000);
    expect(run.outcome).toEqual({ doneAt: expect.any(Number) });
    const sent = w.sends[0] ?? Number.NaN;
    // 1 s, then 2, 4, 8 and the interval: five reads where a read per second would cost twenty.
    expect(w.reads.map((at) => at - sent)).toEqual([1000, 3000, 7000, 15_000, 25_000]);
    expect(w.sends).toHaveLength(1);
  });

  it('when the poll interval is shorter than a second, then every read waits only the interval', async () => {
    const w = world({ setupMs: 0, checkMs: 700 });
    const run = provision(w, { pollMs: 200 });
    await vi.advanceTimersByTimeAsync(5000);
    expect(run.outcome).toEqual({ doneAt: expect.any(Number) });
    const sent = w.sends[0] ?? Number.NaN;
    expect(w.reads.map((at) => at - sent)).toEqual([200, 400, 600, 800]);
  });

  it('when the check says setup is still running, then the next check is sent two poll intervals after it, as before reads came sooner', async () => {
    const w = world({ setupMs: Number.POSITIVE_INFINITY });
    const run = provision(w);
    // Two checks' worth, not the 120 s bootstrap timeout.
    await vi.advanceTimersByTimeAsync(pollMs + 2 * pollMs + 5000);
    const first = w.sends[0] ?? Number.NaN;
    expect(w.sends.map((at) => at - first)).toEqual([0, 2 * pollMs]);
    // Each check is read once: it answered within the first second.
    expect(w.reads.map((at) => at - first)).toEqual([1000, 2 * pollMs + 1000]);
    await vi.advanceTimersByTimeAsync(200_000);
    expect(String(run.outcome.error)).toContain('Setting up your assistant did not finish within 2 minutes.');
  });
});
