import type { IncomingMessage } from 'node:http';
import { badRequest } from './responses.js';

/** Method parameters as the client sent them: typed values from JSON, strings from forms and query strings. */
export type Params = Record<string, unknown>;

const maxBodyBytes = 10 * 1024 * 1024;

/**
 * Merges the query string and the body, as the real server does, so `GET /bot<t>/getMe?x=1`, a form post
 * and grammY's JSON post all reach the same method code.
 */
export async function readParams(req: IncomingMessage, url: URL): Promise<Params> {
  const params: Params = Object.fromEntries(url.searchParams);
  const body = await readBody(req);
  if (body.length === 0) return params;
  const contentType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (contentType === 'application/json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      throw badRequest("can't parse JSON object");
    }
    if (!isRecord(parsed)) throw badRequest('JSON object expected');
    Object.assign(params, parsed);
  } else if (contentType === 'application/x-www-form-urlencoded') {
    for (const [key, value] of new URLSearchParams(body.toString('utf8'))) params[key] = value;
  }
  return params;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    const buffer = chunk as Buffer;
    size += buffer.length;
    if (size > maxBodyBytes) throw badRequest('request entity too large');
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function present(params: Params, name: string): unknown {
  const value = params[name];
  return value === null || value === '' ? undefined : value;
}

export function optionalString(params: Params, name: string): string | undefined {
  const value = present(params, name);
  if (value === undefined) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  throw badRequest(`field "${name}" must be of type String`);
}

export function optionalInt(params: Params, name: string): number | undefined {
  const value = present(params, name);
  if (value === undefined) return undefined;
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value.trim())) return Number(value.trim());
  throw badRequest(`field "${name}" must be a valid Number`);
}

export function requiredInt(params: Params, name: string, missing: string): number {
  const value = optionalInt(params, name);
  if (value === undefined) throw badRequest(missing);
  return value;
}

export function optionalBool(params: Params, name: string): boolean {
  const value = present(params, name);
  return value === true || value === 'true' || value === 1 || value === '1';
}

/** Form posts carry objects as JSON strings; JSON posts carry them inline. Both are accepted. */
export function optionalJson(params: Params, name: string, unparsable: string): unknown {
  const value = present(params, name);
  if (typeof value !== 'string') return value;
  try {
    return JSON.parse(value);
  } catch {
    throw badRequest(unparsable);
  }
}

export function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
