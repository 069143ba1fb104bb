import type { AwsTrouble } from './aws-wait.js';

/**
 * The one place that tells AWS failures worth waiting out from answers. It reads only the shape of
 * an SDK error, never the SDK itself: a modeled error's `name` is the AWS error code, `$metadata` carries
 * the HTTP status, and a network failure is Node's own error with a `code` such as ECONNRESET.
 * Our own wrappers (LaunchError, SecretStoreError) keep the AWS code in `awsCode`.
 */

// ThrottlingException (SSM and most JSON APIs), Throttling (Query APIs), RequestLimitExceeded (EC2),
// and the other spellings the SDK itself retries as throttling. LimitExceededException is left out
// on purpose: several services use it for quotas, which no wait fixes.
const throttlingCodes = new Set([
  'ThrottlingException',
  'Throttling',
  'RequestLimitExceeded',
  'TooManyRequestsException',
  'RequestThrottledException',
  'RequestThrottled',
  'ThrottledException',
  'EC2ThrottledException',
  'BandwidthLimitExceeded',
  'SlowDown',
  'PriorRequestNotComplete',
  // SSM: another update of the same parameter is under way.
  'TooManyUpdates',
]);

// AWS's own "try again" codes (EC2's InternalError and Unavailable, SSM's InternalServerError).
const serverCodes = new Set([
  'InternalError',
  'InternalFailure',
  'InternalServerError',
  'InternalServerException',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'Unavailable',
  'RequestTimeout',
  'RequestTimeoutException',
]);

const networkCodes = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'TimeoutError',
]);

// The statuses the SDK retries; a 501 says the call will never work.
const retriedStatuses = new Set([500, 502, 503, 504]);

// EC2 answers these with HTTP 500, yet they are answers: the member is told there is no capacity.
const answeredAsServerError = /^Insufficient\w*Capacity$/;

interface ErrorShape {
  name?: unknown;
  code?: unknown;
  awsCode?: unknown;
  $metadata?: { httpStatusCode?: unknown };
  $retryable?: { throttling?: unknown };
  cause?: unknown;
}

/** The AWS error code of a failure, or the network error's code; `Unknown` when it has neither. */
export function awsErrorCode(error: unknown): string {
  if (!error || typeof error !== 'object') return 'Unknown';
  const e = error as ErrorShape;
  if (typeof e.awsCode === 'string') return e.awsCode;
  // Node's network errors are plain `Error`s; their code says what happened.
  if (typeof e.code === 'string' && (e.name === 'Error' || e.name === undefined)) return e.code;
  return typeof e.name === 'string' && e.name ? e.name : 'Unknown';
}

/** What kind of transient failure this is, or undefined when waiting would not change the answer. */
export function transientAwsError(error: unknown, depth = 0): AwsTrouble | undefined {
  if (!error || typeof error !== 'object') return undefined;
  const e = error as ErrorShape;
  const code = awsErrorCode(error);
  if (throttlingCodes.has(code) || e.$retryable?.throttling === true) return { kind: 'throttled', code };
  if (answeredAsServerError.test(code)) return undefined;
  if (serverCodes.has(code)) return { kind: 'server error', code };
  if (networkCodes.has(code) || (typeof e.code === 'string' && networkCodes.has(e.code)))
    return { kind: 'network error', code };
  const status = Number(e.$metadata?.httpStatusCode);
  if (status === 429) return { kind: 'throttled', code };
  if (retriedStatuses.has(status)) return { kind: 'server error', code };
  // The SDK wraps some socket failures; the cause says what it was.
  return depth < 3 && e.cause ? transientAwsError(e.cause, depth + 1) : undefined;
}

export function isTransientAwsError(error: unknown): boolean {
  return transientAwsError(error) !== undefined;
}

/** Throttling only: the call never ran, so even a call that is not idempotent may simply be sent again. */
export function isThrottlingAwsError(error: unknown): boolean {
  return transientAwsError(error)?.kind === 'throttled';
}
