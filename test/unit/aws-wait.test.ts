import {
  DescribeParametersCommand,
  InternalServerError,
  InvalidInstanceId,
  SSMClient,
  ThrottlingException,
} from '@aws-sdk/client-ssm';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { awsErrorCode, isTransientAwsError, transientAwsError } from '../../src/core/aws-errors.js';
import {
  type AwsTrouble,
  AwsWaitExpired,
  backoffDelay,
  createAwsWait,
  waitingLine,
} from '../../src/core/aws-wait.js';
import type { Fleet, InstanceHealth } from '../../src/core/ports/fleet.js';
import { LaunchError } from '../../src/core/ports/fleet.js';
import { SecretStoreError } from '../../src/core/ports/secret-store.js';
import { createHealthPoller, StageTimeout } from '../../src/jobs/health-poller.js';
import { freePort } from '../peers/free-port.js';
import { capturedLogger } from '../support/quiet-log.js';

/** An error shaped as the SDK throws it for an unmodeled AWS error code (EC2's Query errors are all such). */
function awsError(name: string, status: number): Error {
  return Object.assign(new Error(`${name} from AWS`), {
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
  });
}

const metadata = { $metadata: { httpStatusCode: 400 } };

describe('which AWS failures are transient', () => {
  it.each([
    [
      'SSM ThrottlingException',
      new ThrottlingException({ message: 'Rate exceeded', Message: 'Rate exceeded', ...metadata }),
      'throttled',
    ],
    ['EC2 RequestLimitExceeded', awsError('RequestLimitExceeded', 503), 'throttled'],
    ['Query API Throttling', awsError('Throttling', 400), 'throttled'],
    ['SSM InternalServerError', new InternalServerError({ message: 'oops', $metadata: {} }), 'server error'],
    ['EC2 InternalError', awsError('InternalError', 500), 'server error'],
    ['EC2 Unavailable', awsError('Unavailable', 503), 'server error'],
    ['ServiceUnavailable', awsError('ServiceUnavailable', 503), 'server error'],
    ['an unnamed 502', awsError('UnknownError', 502), 'server error'],
    ['ECONNRESET', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'network error'],
    ['a request timeout', Object.assign(new Error('timed out'), { name: 'TimeoutError' }), 'network error'],
    ['a LaunchError that was throttled', new LaunchError('other', 'RequestLimitExceeded'), 'throttled'],
    ['a throttled SecretStoreError', new SecretStoreError('throttled', 'ThrottlingException'), 'throttled'],
  ])('when the failure is %s, then it is %s and worth waiting out', (_what, error, kind) => {
    expect(transientAwsError(error)?.kind).toBe(kind);
    expect(isTransientAwsError(error)).toBe(true);
  });

  it.each([
    ['SSM InvalidInstanceId', new InvalidInstanceId({ message: 'not managed', ...metadata })],
    ['AccessDeniedException', awsError('AccessDeniedException', 400)],
    ['ValidationException', awsError('ValidationException', 400)],
    ['InvalidInstanceID.NotFound', awsError('InvalidInstanceID.NotFound', 400)],
    // EC2 answers these with HTTP 500, yet the member is told at once that there is no capacity.
    ['InsufficientInstanceCapacity', awsError('InsufficientInstanceCapacity', 500)],
    ['a 501', awsError('NotImplemented', 501)],
    ['a LaunchError for a bad image', new LaunchError('bad-image', 'InvalidAMIID.NotFound')],
    ['a denied SecretStoreError', new SecretStoreError('denied', 'AccessDeniedException')],
    ['a plain bug', new TypeError('cannot read properties of undefined')],
    ['not an error at all', 'ThrottlingException'],
  ])('when the failure is %s, then it is an answer, not a wait', (_what, error) => {
    expect(transientAwsError(error)).toBeUndefined();
  });

  it('when AWS cannot be reached at all, then the SDK error is a network error named by its code', async () => {
    const ssm = new SSMClient({
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${await freePort()}`,
      maxAttempts: 1,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    });
    const error = await ssm.send(new DescribeParametersCommand({})).catch((e: unknown) => e);
    ssm.destroy();
    expect(transientAwsError(error)).toEqual({ kind: 'network error', code: 'ECONNREFUSED' });
    expect(awsErrorCode(error)).toBe('ECONNREFUSED');
  });
});

describe('backoff', () => {
  it('when retries go on, then each wait doubles up to the cap, jittered within its upper half', () => {
    const backoff = { baseMs: 1000, capMs: 20_000 };
    expect([0, 1, 2, 3, 4, 5, 40].map((n) => backoffDelay(n, backoff, () => 0))).toEqual([
      500, 1000, 2000, 4000, 8000, 10_000, 10_000,
    ]);
    expect([0, 1, 2, 3, 4, 5, 40].map((n) => backoffDelay(n, backoff, () => 1))).toEqual([
      1000, 2000, 4000, 8000, 16_000, 20_000, 20_000,
    ]);
  });
});

describe('waiting out AWS', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const throttled = () =>
    new ThrottlingException({ message: 'Rate exceeded', Message: 'Rate exceeded', ...metadata });
  const timerSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

  /** A call that fails with `failures` in turn, then answers; records when each attempt ran. */
  function flaky(failures: unknown[]) {
    const attempts: number[] = [];
    return {
      attempts,
      call: async () => {
        attempts.push(Date.now());
        const failure = failures[attempts.length - 1];
        if (failure) throw failure;
        return 'answered';
      },
    };
  }

  it('when calls are throttled, then they are retried after growing waits, the waiting state is told, and cleared by the answer', async () => {
    const changes: (AwsTrouble | undefined)[] = [];
    const aws = createAwsWait({
      classify: transientAwsError,
      maxWaitMs: 60_000,
      onChange: (trouble) => changes.push(trouble),
      sleep: timerSleep,
      random: () => 0,
    });
    const { attempts, call } = flaky([throttled(), throttled(), throttled()]);
    const start = Date.now();
    const result = aws.run(call);
    await vi.advanceTimersByTimeAsync(499);
    expect(attempts).toHaveLength(1);
    expect(aws.trouble()).toEqual({ kind: 'throttled', code: 'ThrottlingException' });
    await vi.advanceTimersByTimeAsync(1 + 1000 + 2000);
    await expect(result).resolves.toBe('answered');
    expect(attempts.map((at) => at - start)).toEqual([0, 500, 1500, 3500]);
    expect(changes).toEqual([{ kind: 'throttled', code: 'ThrottlingException' }, undefined]);
    expect(aws.trouble()).toBeUndefined();
    expect(waitingLine({ kind: 'throttled', code: 'ThrottlingException' })).toBe(
      'waiting on AWS (throttled), retrying…',
    );
  });

  it('when the failure is not transient, then it is thrown at once without a retry', async () => {
    const aws = createAwsWait({ classify: transientAwsError, sleep: timerSleep });
    const denied = new InvalidInstanceId({ message: 'not managed', ...metadata });
    const { attempts, call } = flaky([denied]);
    await expect(aws.run(call)).rejects.toBe(denied);
    expect(attempts).toHaveLength(1);
    expect(aws.trouble()).toBeUndefined();
  });

  it('when the trouble outlasts the limit, then the last attempt runs on the deadline and AwsWaitExpired names the error', async () => {
    const aws = createAwsWait({
      classify: transientAwsError,
      maxWaitMs: 10_000,
      sleep: timerSleep,
      random: () => 1,
    });
    const { attempts, call } = flaky(Array.from({ length: 100 }, throttled));
    const start = Date.now();
    const result = aws.run(call).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(60_000);
    const error = await result;
    expect(error).toBeInstanceOf(AwsWaitExpired);
    expect((error as AwsWaitExpired).trouble.code).toBe('ThrottlingException');
    expect((error as AwsWaitExpired).message).toBe(
      'AWS kept failing with ThrottlingException (throttled) for 10s',
    );
    // 1 s, 2 s, 4 s, then the 3 s left: the deadline caps the last wait.
    expect(attempts.map((at) => at - start)).toEqual([0, 1000, 3000, 7000, 10_000]);
  });

  it('when calls get through in between, then the limit counts from the latest stretch of trouble only', async () => {
    const aws = createAwsWait({
      classify: transientAwsError,
      maxWaitMs: 5000,
      sleep: timerSleep,
      random: () => 1,
    });
    // Three stretches of 3 s of throttling each: 9 s of trouble, but never 5 s at a stretch.
    for (let stretch = 0; stretch < 3; stretch++) {
      const { call } = flaky([throttled(), throttled()]);
      const result = aws.run(call);
      await vi.advanceTimersByTimeAsync(3000);
      await expect(result).resolves.toBe('answered');
    }
  });

  it("when the caller's own deadline comes first, then it gives up there", async () => {
    const aws = createAwsWait({
      classify: transientAwsError,
      maxWaitMs: 60_000,
      sleep: timerSleep,
      random: () => 1,
    });
    const { attempts, call } = flaky(Array.from({ length: 100 }, () => awsError('InternalError', 500)));
    const start = Date.now();
    const result = aws.run(call, start + 2500).catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(await result).toBeInstanceOf(AwsWaitExpired);
    expect(attempts.map((at) => at - start)).toEqual([0, 1000, 2500]);
  });
});

describe('the shared status poll under throttling', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  const running: InstanceHealth = { state: 'running', system: 'ok', instance: 'ok' };

  /** A fleet whose DescribeInstanceStatus fails while `failing` is set; records when it was asked. */
  function fleetWith() {
    const polls: number[] = [];
    const state = { failing: undefined as Error | undefined };
    const fleet = {
      async health(ids: readonly string[]) {
        polls.push(Date.now());
        if (state.failing) throw state.failing;
        return new Map(ids.map((id) => [id, running]));
      },
    } as Pick<Fleet, 'health'> as Fleet;
    return { fleet, polls, state };
  }

  it('when polls are throttled, then ticks back off, waiters hear of it and of the recovery, and the wait still succeeds', async () => {
    const { fleet, polls, state } = fleetWith();
    state.failing = awsError('RequestLimitExceeded', 503);
    const poller = createHealthPoller(fleet, 200, capturedLogger().log, { random: () => 1 });
    const heard: (string | undefined)[] = [];
    const start = Date.now();
    const ready = poller.waitUntil(
      'i-0123456789abcdef0',
      (h) => h?.state === 'running',
      60_000,
      (t) => heard.push(t?.code),
    );
    await vi.advanceTimersByTimeAsync(200 + 1000 + 2000 + 4000);
    state.failing = undefined;
    await vi.advanceTimersByTimeAsync(8000);
    await expect(ready).resolves.toEqual(running);
    // 200 ms apart while answered; 1 s, 2 s, 4 s, 8 s while throttled.
    expect(polls.map((at) => at - start)).toEqual([200, 1200, 3200, 7200, 15_200]);
    expect(heard).toEqual([
      'RequestLimitExceeded',
      'RequestLimitExceeded',
      'RequestLimitExceeded',
      'RequestLimitExceeded',
      undefined,
    ]);
    poller.stop();
  });

  it('when the stage runs out while polls are throttled, then the timeout carries the AWS error, on time', async () => {
    const { fleet, polls, state } = fleetWith();
    state.failing = awsError('RequestLimitExceeded', 503);
    const poller = createHealthPoller(fleet, 200, capturedLogger().log, { random: () => 1 });
    const start = Date.now();
    const ready = poller
      .waitUntil('i-0123456789abcdef0', (h) => h?.state === 'running', 5000)
      .catch((e: unknown) => e);
    await vi.advanceTimersByTimeAsync(10_000);
    const error = await ready;
    expect(error).toBeInstanceOf(StageTimeout);
    expect((error as StageTimeout).trouble?.trouble).toEqual({
      kind: 'throttled',
      code: 'RequestLimitExceeded',
    });
    // The backoff never sleeps past the deadline: the last poll comes on it.
    expect(polls.at(-1)).toBe(start + 5000);
    poller.stop();
  });
});
