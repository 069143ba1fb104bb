import { randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { escapeXml } from './xml.js';

/** moto's own default account, used when a client sends no `x-moto-account-id`. */
export const DEFAULT_ACCOUNT_ID = '123456789012';

/**
 * The three wire shapes the SDK speaks to us: AWS JSON 1.1 (SSM), EC2 Query (its own error
 * envelope) and the other Query services (IAM, STS). Anything else is forwarded untouched.
 */
export type Protocol = 'json' | 'ec2' | 'query' | 'other';

export interface AwsCall {
  accountId: string;
  region: string;
  /** The signing name from the credential scope, e.g. `ssm`, `ec2`. */
  service: string;
  operation: string;
  protocol: Protocol;
  /** JSON body for JSON services; the raw form for Query services. */
  json: Record<string, unknown>;
  form: URLSearchParams;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: string | Buffer;
}

/** An error in the service's own vocabulary; the protocol decides how it goes on the wire. */
export class AwsError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'AwsError';
  }
}

export function validationError(field: string, value: unknown, constraint: string): AwsError {
  const shown = value === undefined || value === null ? 'null' : `'${String(value)}'`;
  return new AwsError(
    'ValidationException',
    `1 validation error detected: Value ${shown} at '${field}' failed to satisfy constraint: ${constraint}`,
  );
}

const SCOPE = /Credential=[^/,\s]+\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/;
const TARGET_SERVICES: Record<string, string> = { AmazonSSM: 'ssm' };

export function parseCall(method: string, url: string, headers: IncomingHttpHeaders, body: Buffer): AwsCall {
  const scope = SCOPE.exec(String(headers.authorization ?? ''));
  const target = String(headers['x-amz-target'] ?? '');
  const contentType = String(headers['content-type'] ?? '');
  const accountHeader = headers['x-moto-account-id'];
  const accountId = (Array.isArray(accountHeader) ? accountHeader[0] : accountHeader) || DEFAULT_ACCOUNT_ID;
  const region = scope?.[1] ?? 'us-east-1';
  let service = scope?.[2] ?? '';
  let json: Record<string, unknown> = {};
  let form = new URLSearchParams();
  let operation: string;
  let protocol: Protocol;
  if (target) {
    const [prefix = '', op = ''] = target.split('.');
    service ||= TARGET_SERVICES[prefix] ?? prefix.toLowerCase();
    operation = op;
    protocol = 'json';
    json = parseJsonObject(body);
  } else if (method === 'POST' && contentType.startsWith('application/x-www-form-urlencoded')) {
    form = new URLSearchParams(body.toString('utf8'));
    operation = form.get('Action') ?? 'Unknown';
    // Unsigned callers (curl) still reach EC2 when they name its API version.
    service ||= form.get('Version') === '2016-11-15' ? 'ec2' : 'unknown';
    protocol = service === 'ec2' ? 'ec2' : 'query';
  } else {
    operation = `${method} ${url.split('?')[0]}`;
    protocol = 'other';
    service ||= 'unknown';
  }
  return { accountId, region, service, operation, protocol, json, form, method, url, headers, body };
}

function parseJsonObject(body: Buffer): Record<string, unknown> {
  if (body.length === 0) return {};
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return value && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : {};
  } catch {
    return {};
  }
}

export function jsonReply(value: unknown, status = 200): Reply {
  return {
    status,
    headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() },
    body: JSON.stringify(value),
  };
}

export function errorReply(protocol: Protocol, error: AwsError): Reply {
  const requestId = randomUUID();
  const code = escapeXml(error.code);
  const message = escapeXml(error.message);
  if (protocol === 'ec2') {
    return {
      status: error.status,
      headers: { 'content-type': 'text/xml', 'x-amzn-requestid': requestId },
      body: `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`,
    };
  }
  if (protocol === 'query') {
    const type = error.status >= 500 ? 'Receiver' : 'Sender';
    return {
      status: error.status,
      headers: { 'content-type': 'text/xml', 'x-amzn-requestid': requestId },
      body: `<ErrorResponse><Error><Type>${type}</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
    };
  }
  return {
    status: error.status,
    headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': requestId },
    body: JSON.stringify({ __type: error.code, message: error.message }),
  };
}

export function throttleError(protocol: Protocol): AwsError {
  if (protocol === 'ec2') return new AwsError('RequestLimitExceeded', 'Request limit exceeded.', 503);
  if (protocol === 'query') return new AwsError('Throttling', 'Rate exceeded', 400);
  return new AwsError('ThrottlingException', 'Rate exceeded', 400);
}

export function serverError(protocol: Protocol, detail = 'An internal error has occurred.'): AwsError {
  if (protocol === 'ec2') return new AwsError('InternalError', detail, 500);
  if (protocol === 'query') return new AwsError('InternalFailure', detail, 500);
  return new AwsError('InternalServerError', detail, 500);
}

/** Epoch seconds with milliseconds, the JSON protocol's timestamp format. */
export function epochSeconds(ms: number): number {
  return Math.round(ms) / 1000;
}
