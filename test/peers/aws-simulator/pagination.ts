import { AwsError, validationError } from './wire.js';

export interface PageLimits {
  min: number;
  max: number;
  fallback: number;
}

/**
 * One page of `all`, with AWS's bounds on MaxResults. The token is opaque to callers (base64 of an
 * offset and the listing it belongs to) so a token from one listing is rejected by another.
 */
export function page<T>(
  all: T[],
  input: Record<string, unknown>,
  limits: PageLimits,
  listing: string,
): { items: T[]; nextToken: string | undefined } {
  const maxResults = input.MaxResults ?? limits.fallback;
  if (typeof maxResults !== 'number' || !Number.isInteger(maxResults)) {
    throw validationError('maxResults', maxResults, 'Member must be an integer');
  }
  if (maxResults > limits.max) {
    throw validationError(
      'maxResults',
      maxResults,
      `Member must have value less than or equal to ${limits.max}`,
    );
  }
  if (maxResults < limits.min) {
    throw validationError(
      'maxResults',
      maxResults,
      `Member must have value greater than or equal to ${limits.min}`,
    );
  }
  const offset = input.NextToken === undefined ? 0 : decodeToken(input.NextToken, listing);
  const items = all.slice(offset, offset + maxResults);
  const next = offset + items.length;
  return { items, nextToken: next < all.length ? encodeToken(next, listing) : undefined };
}

export function encodeToken(offset: number, listing: string): string {
  return Buffer.from(JSON.stringify({ o: offset, l: listing })).toString('base64');
}

/**
 * The offset a token stands for; a token from another listing, or none at all, fails with the
 * service's own error (SSM's InvalidNextToken unless the caller names EC2's).
 */
export function decodeToken(
  token: unknown,
  listing: string,
  error = new AwsError('InvalidNextToken', 'The specified token is not valid.'),
): number {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(String(token), 'base64').toString('utf8'));
    if (parsed && typeof parsed === 'object' && 'o' in parsed && 'l' in parsed) {
      const { o, l } = parsed as { o: unknown; l: unknown };
      if (l === listing && typeof o === 'number' && Number.isInteger(o) && o >= 0) return o;
    }
  } catch {
    // falls through to the error below
  }
  throw error;
}
