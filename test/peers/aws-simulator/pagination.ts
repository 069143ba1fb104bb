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

function encodeToken(offset: number, listing: string): string {
  return Buffer.from(JSON.stringify({ o: offset, l: listing })).toString('base64');
}

function decodeToken(token: unknown, listing: string): number {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(String(token), 'base64').toString('utf8'));
    if (parsed && typeof parsed === 'object' && 'o' in parsed && 'l' in parsed) {
      const { o, l } = parsed as { o: unknown; l: unknown };
      if (l === listing && typeof o === 'number' && Number.isInteger(o) && o >= 0) return o;
    }
  } catch {
    // falls through to the error below
  }
  throw new AwsError('InvalidNextToken', 'The specified token is not valid.');
}
