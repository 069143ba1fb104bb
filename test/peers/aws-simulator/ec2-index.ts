/**
 * EC2 reads for a fleet too large for moto: its DescribeInstances takes seconds per thousand
 * instances, so a fleet of 10,000 made every listing slower than the code under test. After
 * `indexFleet` an account's DescribeInstances and DescribeInstanceStatus are answered here, from
 * the simulator's own index, and never reach moto; every other account still goes through
 * boot-timing.ts to moto. The index holds what fleet.ts reads (ids, states, tags, launch times) and
 * the reply has the EC2 Query shape the SDK parses (a `reservationSet` of `instancesSet` items).
 *
 * Only the indexed instances exist for these reads: an instance launched in moto under an indexed
 * account is not listed, and moto does not know the indexed ones (a Stop or Terminate naming one
 * answers InvalidInstanceID.NotFound). Indexing the same id again replaces it, e.g. with a new state.
 */
import { randomUUID } from 'node:crypto';
import { privateDnsName } from './instance-information.js';
import { decodeToken, encodeToken } from './pagination.js';
import {
  type FleetIndex,
  INSTANCE_STATE_CODES,
  type IndexedInstance,
  type InstanceStateName,
  type SimulatorState,
} from './state.js';
import type { Upstream } from './upstream.js';
import { type AwsCall, AwsError, type Reply } from './wire.js';
import { escapeXml } from './xml.js';

type Ec2Handler = (call: AwsCall) => Promise<Reply>;

/** An instance as `indexFleet` takes it; left out, state is running and launchTime the simulator's now. */
export interface FleetInstanceSpec {
  instanceId: string;
  state?: InstanceStateName;
  tags: Record<string, string>;
  launchTime?: Date;
  instanceType?: string;
}

/** What an account's index holds and how many calls it answered, for a benchmark to report. */
export interface FleetIndexStats {
  instances: number;
  served: { DescribeInstances: number; DescribeInstanceStatus: number };
}

/** EC2 instance ids: `i-` and 8 or 17 hexadecimal digits. */
const EC2_INSTANCE_ID = /^i-([0-9a-f]{8}|[0-9a-f]{17})$/;
/** The image every indexed instance reports; fleet.ts never reads it. */
const IMAGE_ID = 'ami-12c6146b';
const XMLNS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

/** Adds (or replaces) instances in the account's index, creating the index on first use. */
export function indexFleet(
  state: SimulatorState,
  accountId: string,
  instances: FleetInstanceSpec[],
  now: number,
): void {
  for (const spec of instances) {
    if (!EC2_INSTANCE_ID.test(spec.instanceId))
      throw new Error(`not an EC2 instance id: ${spec.instanceId} (i- and 8 or 17 hex digits)`);
    if (spec.state !== undefined && !(spec.state in INSTANCE_STATE_CODES))
      throw new Error(`not an EC2 instance state: ${spec.state}`);
  }
  const account = state.account(accountId);
  account.fleetIndex ??= {
    instances: new Map(),
    served: { DescribeInstances: 0, DescribeInstanceStatus: 0 },
  };
  const index = account.fleetIndex;
  for (const spec of instances) {
    const existing = index.instances.get(spec.instanceId);
    index.instances.set(spec.instanceId, {
      instanceId: spec.instanceId,
      state: spec.state ?? 'running',
      tags: { ...spec.tags },
      launchTime: spec.launchTime?.getTime() ?? existing?.launchTime ?? now,
      instanceType: spec.instanceType ?? existing?.instanceType ?? 't3.small',
      privateIpAddress: existing?.privateIpAddress ?? privateIp(index.instances.size),
    });
  }
}

export function fleetIndexStats(state: SimulatorState, accountId: string): FleetIndexStats {
  const index = state.account(accountId).fleetIndex;
  return {
    instances: index?.instances.size ?? 0,
    served: { ...(index?.served ?? { DescribeInstances: 0, DescribeInstanceStatus: 0 }) },
  };
}

/**
 * The EC2 handlers with DescribeInstances and DescribeInstanceStatus answered from the index for
 * accounts that have one; the given handlers (or moto) for every other account.
 */
export function withFleetIndex(
  deps: { state: SimulatorState; upstream: Upstream },
  handlers: Record<string, Ec2Handler>,
): Record<string, Ec2Handler> {
  const fallback = (operation: string): Ec2Handler =>
    handlers[operation] ??
    (async (call) => {
      const response = await deps.upstream.fetch(call);
      return { status: response.status, headers: response.headers, body: response.body };
    });
  const indexed =
    (operation: 'DescribeInstances' | 'DescribeInstanceStatus', answer: IndexAnswer): Ec2Handler =>
    async (call) => {
      const index = deps.state.account(call.accountId).fleetIndex;
      if (!index) return fallback(operation)(call);
      index.served[operation] += 1;
      return xmlReply(answer(call, index));
    };
  return {
    ...handlers,
    DescribeInstances: indexed('DescribeInstances', describeInstances),
    DescribeInstanceStatus: indexed('DescribeInstanceStatus', describeInstanceStatus),
  };
}

type IndexAnswer = (call: AwsCall, index: FleetIndex) => string;

/**
 * DescribeInstances
 * (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstances.html): InstanceIds
 * ("If you specify an instance ID that is not valid, an error is returned"), the filters fleet.ts
 * sends (`tag:<key>`, `instance-id`) plus `tag-key`, `instance-state-name` and
 * `instance-state-code`, and paging: "MaxResults [...] You cannot specify this parameter and the
 * instance IDs parameter in the same request", between 5 and 1000. Without MaxResults every match
 * comes in one reply, which is why AWS asks large fleets to page
 * (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-pagination.html).
 */
function describeInstances(call: AwsCall, index: FleetIndex): string {
  const { form } = call;
  const ids = listParam(form, 'InstanceId');
  const filters = readFilters(form, INSTANCE_FILTERS);
  const matched = candidates(index, ids, filters).filter((instance) => matchesAll(instance, filters));
  const { items, nextToken } = pageOf(matched, form, ids, filters, 'DescribeInstances');
  const reservations = items.map((instance) => reservationXml(call, instance)).join('');
  return (
    `<DescribeInstancesResponse xmlns="${XMLNS}"><requestId>${randomUUID()}</requestId>` +
    `<reservationSet>${reservations}</reservationSet>${nextTokenXml(nextToken)}</DescribeInstancesResponse>`
  );
}

/**
 * DescribeInstanceStatus
 * (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeInstanceStatus.html):
 * "IncludeAllInstances: When true, includes the health status for all instances. When false,
 * includes the health status for running instances only." An indexed instance that runs has passed
 * both checks; any other shows them not-applicable. Ids, state and check filters, and paging as
 * for DescribeInstances.
 */
function describeInstanceStatus(call: AwsCall, index: FleetIndex): string {
  const { form } = call;
  const ids = listParam(form, 'InstanceId');
  const filters = readFilters(form, STATUS_FILTERS);
  const includeAll = form.get('IncludeAllInstances') === 'true';
  const matched = candidates(index, ids, filters)
    .filter((instance) => includeAll || instance.state === 'running')
    .filter((instance) => matchesAll(instance, filters));
  const { items, nextToken } = pageOf(matched, form, ids, filters, 'DescribeInstanceStatus');
  const statuses = items.map((instance) => statusXml(call, instance)).join('');
  return (
    `<DescribeInstanceStatusResponse xmlns="${XMLNS}"><requestId>${randomUUID()}</requestId>` +
    `<instanceStatusSet>${statuses}</instanceStatusSet>${nextTokenXml(nextToken)}</DescribeInstanceStatusResponse>`
  );
}

interface Filter {
  name: string;
  /** One test per value: exact, or EC2's `*` and `?` wildcards. */
  values: ((value: string) => boolean)[];
  raw: string[];
}

const INSTANCE_FILTERS = new Set(['instance-id', 'instance-state-name', 'instance-state-code', 'tag-key']);
const STATUS_FILTERS = new Set([
  'instance-id',
  'instance-state-name',
  'instance-state-code',
  'instance-status.status',
  'system-status.status',
]);

/** `Filter.N.Name` and `Filter.N.Value.M`: every filter must match, any of its values may. */
function readFilters(form: URLSearchParams, known: Set<string>): Filter[] {
  const byIndex = new Map<number, { name: string; raw: string[] }>();
  for (const [key, value] of form) {
    const nameKey = /^Filter\.(\d+)\.Name$/.exec(key);
    const valueKey = /^Filter\.(\d+)\.Value\.(\d+)$/.exec(key);
    if (!nameKey && !valueKey) continue;
    const n = Number((nameKey ?? valueKey)?.[1]);
    const filter = byIndex.get(n) ?? { name: '', raw: [] };
    if (nameKey) filter.name = value;
    else filter.raw.push(value);
    byIndex.set(n, filter);
  }
  return [...byIndex.values()].map(({ name, raw }) => {
    const tagFilter = name.startsWith('tag:') && name.length > 'tag:'.length;
    if (!tagFilter && !known.has(name)) {
      throw new AwsError(
        'InvalidParameterValue',
        `The AWS simulator's fleet index does not support the filter '${name}'.`,
      );
    }
    return { name, raw, values: raw.map(valueTest) };
  });
}

function valueTest(pattern: string): (value: string) => boolean {
  if (!/[*?]/.test(pattern)) return (value) => value === pattern;
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  const regex = new RegExp(`^${source}$`);
  return (value) => regex.test(value);
}

function matchesAll(instance: IndexedInstance, filters: Filter[]): boolean {
  return filters.every((filter) => {
    if (filter.name === 'tag-key')
      return Object.keys(instance.tags).some((key) => filter.values.some((test) => test(key)));
    const value = filterValue(instance, filter.name);
    return value !== undefined && filter.values.some((test) => test(value));
  });
}

function filterValue(instance: IndexedInstance, name: string): string | undefined {
  if (name.startsWith('tag:')) return instance.tags[name.slice('tag:'.length)];
  switch (name) {
    case 'instance-id':
      return instance.instanceId;
    case 'instance-state-name':
      return instance.state;
    case 'instance-state-code':
      return String(INSTANCE_STATE_CODES[instance.state]);
    case 'instance-status.status':
    case 'system-status.status':
      return checkStatus(instance);
    default:
      return undefined;
  }
}

/**
 * The instances a call can match, in index order: those named by InstanceIds (all of which must
 * exist), else those an exact `instance-id` filter names (looked up, not scanned), else all.
 */
function candidates(index: FleetIndex, ids: string[], filters: Filter[]): IndexedInstance[] {
  if (ids.length > 0) {
    const missing = [...new Set(ids.filter((id) => !index.instances.has(id)))];
    // moto's wording, which fleet.ts parses: "The instance ID 'i-1' does not exist" or "The
    // instance IDs 'i-1, i-2' do not exist"; the code is EC2's
    // (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
    if (missing.length === 1)
      throw new AwsError('InvalidInstanceID.NotFound', `The instance ID '${missing[0]}' does not exist`);
    if (missing.length > 1)
      throw new AwsError(
        'InvalidInstanceID.NotFound',
        `The instance IDs '${missing.join(', ')}' do not exist`,
      );
    return inIndexOrder(index, new Set(ids));
  }
  const byId = filters.find((f) => f.name === 'instance-id' && !f.raw.some((v) => /[*?]/.test(v)));
  if (byId) return inIndexOrder(index, new Set(byId.raw));
  return [...index.instances.values()];
}

/** The named instances the index has, in the index's own order, so pages stay stable across calls. */
function inIndexOrder(index: FleetIndex, ids: Set<string>): IndexedInstance[] {
  return [...index.instances.values()].filter((instance) => ids.has(instance.instanceId));
}

/**
 * One page: MaxResults "between 5 and 1000", not with InstanceIds; a NextToken from another
 * listing is refused with EC2's InvalidPaginationToken ("The specified pagination token is not
 * valid or is expired.", https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html).
 */
function pageOf<T>(
  all: T[],
  form: URLSearchParams,
  ids: string[],
  filters: Filter[],
  operation: string,
): { items: T[]; nextToken: string | undefined } {
  const raw = form.get('MaxResults');
  if (raw !== null && ids.length > 0) {
    throw new AwsError(
      'InvalidParameterCombination',
      'The parameter instancesSet cannot be used with the parameter maxResults',
    );
  }
  const maxResults = raw === null ? undefined : Number(raw);
  if (maxResults !== undefined && !(Number.isInteger(maxResults) && maxResults >= 5 && maxResults <= 1000)) {
    throw new AwsError(
      'InvalidParameterValue',
      `Value ( ${raw} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.`,
    );
  }
  const listing = `${operation}:${listingKey(ids, filters, form.get('IncludeAllInstances'))}`;
  const token = form.get('NextToken');
  const offset =
    token === null || token === ''
      ? 0
      : decodeToken(
          token,
          listing,
          new AwsError(
            'InvalidPaginationToken',
            'The specified pagination token is not valid or is expired.',
          ),
        );
  const items = maxResults === undefined ? all.slice(offset) : all.slice(offset, offset + maxResults);
  const next = offset + items.length;
  return { items, nextToken: next < all.length ? encodeToken(next, listing) : undefined };
}

/** A short fingerprint of what a listing asked for, so a token stays small even for 200 filter values. */
function listingKey(ids: string[], filters: Filter[], includeAll: string | null): string {
  let hash = 0x811c9dc5;
  const text = JSON.stringify([ids, filters.map((f) => [f.name, f.raw]), includeAll]);
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0).toString(16);
}

/** `InstanceId.1`, `InstanceId.2`, ... in order. */
function listParam(form: URLSearchParams, name: string): string[] {
  const pattern = new RegExp(`^${name}\\.(\\d+)$`);
  return [...form]
    .map(([key, value]) => ({ n: Number(pattern.exec(key)?.[1]), value }))
    .filter(({ n }) => Number.isInteger(n))
    .sort((a, b) => a.n - b.n)
    .map(({ value }) => value);
}

/**
 * Each instance's reservation XML, built once per region: a listing of 10,000 then only joins
 * strings. A re-indexed instance is a new record, so its old XML is dropped with the old record.
 */
const reservationCache = new WeakMap<IndexedInstance, { key: string; xml: string }>();

function reservationXml(call: AwsCall, instance: IndexedInstance): string {
  const key = `${call.accountId}:${call.region}`;
  const cached = reservationCache.get(instance);
  if (cached?.key === key) return cached.xml;
  const xml = buildReservationXml(call, instance);
  reservationCache.set(instance, { key, xml });
  return xml;
}

/** One reservation per instance, as if each had been launched on its own. */
function buildReservationXml(call: AwsCall, instance: IndexedInstance): string {
  const tags = Object.entries(instance.tags)
    .map(([key, value]) => `<item><key>${escapeXml(key)}</key><value>${escapeXml(value)}</value></item>`)
    .join('');
  const ip = instance.privateIpAddress;
  return (
    `<item><reservationId>r-${instance.instanceId.slice(2)}</reservationId><ownerId>${call.accountId}</ownerId>` +
    '<groupSet/><instancesSet><item>' +
    `<instanceId>${instance.instanceId}</instanceId><imageId>${IMAGE_ID}</imageId>` +
    stateXml('instanceState', instance) +
    `<privateDnsName>${privateDnsName(ip, call.region)}</privateDnsName><dnsName/><reason/><amiLaunchIndex>0</amiLaunchIndex>` +
    `<productCodes/><instanceType>${escapeXml(instance.instanceType)}</instanceType>` +
    `<launchTime>${new Date(instance.launchTime).toISOString()}</launchTime>` +
    `<placement><availabilityZone>${call.region}a</availabilityZone><groupName/><tenancy>default</tenancy></placement>` +
    `<monitoring><state>disabled</state></monitoring><privateIpAddress>${ip}</privateIpAddress>` +
    '<groupSet/><architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>' +
    '<rootDeviceName>/dev/xvda</rootDeviceName><virtualizationType>hvm</virtualizationType>' +
    `<hypervisor>xen</hypervisor><tagSet>${tags}</tagSet>` +
    '</item></instancesSet></item>'
  );
}

function statusXml(call: AwsCall, instance: IndexedInstance): string {
  const check = (name: string) => {
    const status = checkStatus(instance);
    const details =
      status === 'ok'
        ? '<details><item><name>reachability</name><status>passed</status></item></details>'
        : '';
    return `<${name}>${details}<status>${status}</status></${name}>`;
  };
  return (
    `<item><instanceId>${instance.instanceId}</instanceId><availabilityZone>${call.region}a</availabilityZone>` +
    `${stateXml('instanceState', instance)}${check('instanceStatus')}${check('systemStatus')}</item>`
  );
}

function checkStatus(instance: IndexedInstance): string {
  return instance.state === 'running' ? 'ok' : 'not-applicable';
}

function stateXml(name: string, instance: IndexedInstance): string {
  return `<${name}><code>${INSTANCE_STATE_CODES[instance.state]}</code><name>${instance.state}</name></${name}>`;
}

function nextTokenXml(token: string | undefined): string {
  return token ? `<nextToken>${escapeXml(token)}</nextToken>` : '';
}

function xmlReply(body: string): Reply {
  return {
    status: 200,
    headers: { 'content-type': 'text/xml;charset=UTF-8', 'x-amzn-requestid': randomUUID() },
    body: `<?xml version="1.0" encoding="UTF-8"?>\n${body}`,
  };
}

/** Distinct private addresses in 10.0.0.0/8, in indexing order, from 10.0.0.1. */
function privateIp(n: number): string {
  const host = n + 1;
  return `10.${(host >> 16) & 255}.${(host >> 8) & 255}.${host & 255}`;
}
