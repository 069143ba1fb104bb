/**
 * The checks AWS makes on SendCommand before anything is sent, with its error shapes; moto makes
 * none of them, so without these a caller sending 51 ids or a long Comment would pass every test.
 */
import type { ManagedInstance } from './instance-information.js';
import type { SendCommandTarget } from './state.js';
import { AwsError, validationError } from './wire.js';

const MAX_INSTANCE_IDS = 50;
/**
 * SendCommand's Targets: "Array Members: Minimum number of 0 items. Maximum number of 5 items."
 * (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html); a
 * Target's Key has "Minimum length of 1. Maximum length of 163." and its Values "Maximum number of
 * 50 items." (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_Target.html).
 */
const MAX_TARGETS = 5;
const MAX_TARGET_VALUES = 50;
const TARGET_KEY = /^[\p{L}\p{Z}\p{N}_.:/=\-@]{1,163}$/u;
const MAX_COMMENT = 100;
export const INSTANCE_ID = /(^i-(\w{8}|\w{17})$)|(^mi-\w{17}$)/;
const DOCUMENT_NAME = /^[a-zA-Z0-9_\-.:/]{3,128}$/;
const MAX_CONCURRENCY = /^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%)$/;
const MAX_ERRORS = /^([1-9][0-9]*|[0]|[1-9][0-9]%|[0-9]%|100%)$/;

export interface SendCommandRequest {
  documentName: string;
  /** The ids the request named with InstanceIds; empty when it used Targets. */
  instanceIds: string[];
  /** The request's Targets; undefined when it used InstanceIds. */
  targets: SendCommandTarget[] | undefined;
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
  const targets = readTargets(input.Targets);
  if (targets && Array.isArray(input.InstanceIds) && input.InstanceIds.length > 0) {
    throw new AwsError(
      'ValidationException',
      'The AWS simulator takes InstanceIds or Targets in one SendCommand, not both.',
    );
  }
  const instanceIds = targets ? [] : readInstanceIds(input.InstanceIds);
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
    instanceIds,
    targets,
    comment,
    parameters: readParameters(input.Parameters),
    maxConcurrency,
    maxErrors,
    timeoutSeconds,
  };
}

function readInstanceIds(instanceIds: unknown): string[] {
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
  return instanceIds as string[];
}

/**
 * Targets, in the two forms Run Command documents for a fleet of EC2 instances:
 * "Key=InstanceIds,Values=instance-id-1,instance-id-2,instance-id-3" and
 * "Key=tag:tag-key,Values=tag-value-1,tag-value-2"
 * (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_Target.html). Resource
 * groups and `tag-key` are not simulated and say so. An absent or empty list means none.
 */
function readTargets(value: unknown): SendCommandTarget[] | undefined {
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return undefined;
  if (!Array.isArray(value)) throw new AwsError('ValidationException', 'Targets must be a list.');
  if (value.length > MAX_TARGETS) {
    throw validationError(
      'targets',
      `[${value.length} targets]`,
      `Member must have length less than or equal to ${MAX_TARGETS}`,
    );
  }
  return value.map((raw: unknown, i) => {
    const field = `targets.${i + 1}.member`;
    const target = (raw ?? {}) as { Key?: unknown; Values?: unknown };
    if (typeof target.Key !== 'string' || !TARGET_KEY.test(target.Key)) {
      throw validationError(
        `${field}.key`,
        target.Key,
        `Member must satisfy regular expression pattern: ${TARGET_KEY.source}`,
      );
    }
    const values = target.Values;
    if (!Array.isArray(values) || values.some((v) => typeof v !== 'string' || v === '')) {
      throw validationError(`${field}.values`, values, 'Member must be a list of non-empty strings');
    }
    if (values.length > MAX_TARGET_VALUES) {
      throw validationError(
        `${field}.values`,
        `[${values.join(', ')}]`,
        `Member must have length less than or equal to ${MAX_TARGET_VALUES}`,
      );
    }
    const key = target.Key;
    if (!isInstanceIdsKey(key) && (!key.startsWith('tag:') || key.length === 'tag:'.length)) {
      throw new AwsError(
        'ValidationException',
        `The AWS simulator resolves Targets with Key InstanceIds or tag:<key> only, not ${key}.`,
      );
    }
    return { Key: target.Key, Values: [...values] as string[] };
  });
}

/** The CLI examples spell it `instanceids`, the API reference `InstanceIds`. */
function isInstanceIdsKey(key: string): boolean {
  return key.toLowerCase() === 'instanceids';
}

/**
 * The instance ids a request names outright (InstanceIds, or Targets with Key InstanceIds): each
 * must be reachable, or the whole call fails, as it does for InstanceIds.
 */
export function namedInstanceIds(request: SendCommandRequest): string[] {
  if (!request.targets) return request.instanceIds;
  const named = request.targets.filter((t) => isInstanceIdsKey(t.Key)).flatMap((t) => t.Values);
  return [...new Set(named)];
}

/**
 * Every instance the request targets, in target order. InstanceIds are taken in the order sent.
 * With Targets any of an entry's values matches ("tag:<key>" the node's tag of that key exactly)
 * and, as the API reference does not say how several entries combine, every entry narrows the set
 * here; the order is that of the first InstanceIds entry when there is one, else the order SSM
 * lists its managed nodes in.
 */
export function targetInstanceIds(request: SendCommandRequest, nodes: ManagedInstance[]): string[] {
  const { targets } = request;
  if (!targets) return request.instanceIds;
  const matches = (node: ManagedInstance) =>
    targets.every((target) => {
      if (isInstanceIdsKey(target.Key)) return target.Values.includes(node.instanceId);
      const value = node.tags[target.Key.slice('tag:'.length)];
      return value !== undefined && target.Values.includes(value);
    });
  const chosen = new Set(nodes.filter(matches).map((node) => node.instanceId));
  const byIds = targets.find((t) => isInstanceIdsKey(t.Key));
  return byIds ? [...new Set(byIds.Values)].filter((id) => chosen.has(id)) : [...chosen];
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
