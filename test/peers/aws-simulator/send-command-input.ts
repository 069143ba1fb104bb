/**
 * The checks AWS makes on SendCommand before anything is sent, with its error shapes; moto makes
 * none of them, so without these a caller sending 51 ids or a long Comment would pass every test.
 */
import { AwsError, validationError } from './wire.js';

const MAX_INSTANCE_IDS = 50;
const MAX_COMMENT = 100;
export const INSTANCE_ID = /(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)/;
const DOCUMENT_NAME = /^[a-zA-Z0-9_\-.:/]{3,128}$/;
const MAX_CONCURRENCY = /^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$/;
const MAX_ERRORS = /^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$/;

export interface SendCommandRequest {
  documentName: string;
  instanceIds: string[];
  comment: string;
  parameters: Record<string, string[]>;
  maxConcurrency: string;
  maxErrors: string;
  timeoutSeconds: number;
}

export function validateSendCommand(input: Record<string, unknown>): SendCommandRequest {
  const documentName = input.DocumentName;
  if (typeof documentName !== 'string') {
    throw validationError('documentName', undefined, 'Member must not be null');
  }
  if (!DOCUMENT_NAME.test(documentName)) {
    throw validationError(
      'documentName',
      documentName,
      `Member must satisfy regular expression pattern: ${DOCUMENT_NAME.source}`,
    );
  }
  if (input.Targets !== undefined) {
    throw new AwsError(
      'ValidationException',
      'The AWS simulator supports InstanceIds only; SendCommand Targets are not simulated.',
    );
  }
  const instanceIds = input.InstanceIds;
  if (!Array.isArray(instanceIds) || instanceIds.length === 0) {
    throw new AwsError('ValidationException', 'InstanceIds or Targets must be specified.');
  }
  if (instanceIds.length > MAX_INSTANCE_IDS) {
    throw validationError(
      'instanceIds',
      `[${instanceIds.join(', ')}]`,
      `Member must have length less than or equal to ${MAX_INSTANCE_IDS}`,
    );
  }
  const seen = new Set<string>();
  for (const id of instanceIds) {
    if (typeof id !== 'string' || !INSTANCE_ID.test(id)) {
      throw validationError(
        'instanceIds',
        `[${instanceIds.join(', ')}]`,
        `Member must satisfy constraint: [Member must satisfy regular expression pattern: ${INSTANCE_ID.source}]`,
      );
    }
    if (seen.has(id))
      throw new AwsError('DuplicateInstanceId', `Instance id ${id} is specified more than once.`);
    seen.add(id);
  }
  const comment = input.Comment ?? '';
  if (typeof comment !== 'string' || comment.length > MAX_COMMENT) {
    throw validationError('comment', comment, `Member must have length less than or equal to ${MAX_COMMENT}`);
  }
  const timeoutSeconds = input.TimeoutSeconds ?? 3600;
  if (
    typeof timeoutSeconds !== 'number' ||
    !Number.isInteger(timeoutSeconds) ||
    timeoutSeconds < 30 ||
    timeoutSeconds > 2_592_000
  ) {
    throw validationError(
      'timeoutSeconds',
      timeoutSeconds,
      'Member must have value between 30 and 2592000 (inclusive)',
    );
  }
  const maxConcurrency = input.MaxConcurrency ?? '50';
  if (typeof maxConcurrency !== 'string' || !MAX_CONCURRENCY.test(maxConcurrency)) {
    throw validationError(
      'maxConcurrency',
      maxConcurrency,
      `Member must satisfy regular expression pattern: ${MAX_CONCURRENCY.source}`,
    );
  }
  const maxErrors = input.MaxErrors ?? '0';
  if (typeof maxErrors !== 'string' || !MAX_ERRORS.test(maxErrors)) {
    throw validationError(
      'maxErrors',
      maxErrors,
      `Member must satisfy regular expression pattern: ${MAX_ERRORS.source}`,
    );
  }
  return {
    documentName,
    instanceIds: instanceIds as string[],
    comment,
    parameters: readParameters(input.Parameters),
    maxConcurrency,
    maxErrors,
    timeoutSeconds,
  };
}

function readParameters(value: unknown): Record<string, string[]> {
  if (value === undefined) return {};
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new AwsError(
      'InvalidParameters',
      'Parameters must be a map of parameter names to lists of strings.',
    );
  }
  const out: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(value)) {
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'string')) {
      throw new AwsError('InvalidParameters', `Parameter ${name} must be a list of strings.`);
    }
    out[name] = values as string[];
  }
  return out;
}
