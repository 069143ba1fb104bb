/**
 * moto flips instances to `running` with status `ok` instantly, so the pending -> running ->
 * status-ok path of provisioning could never be exercised. These handlers pass EC2 calls through
 * to moto and rewrite its XML for instances still inside their simulated boot window, or whose
 * boot was set to end with an impaired status check, or that DescribeInstanceStatus must not know
 * yet (visibility-lag.ts). Starting an instance also releases commands Delayed on it.
 */
import { instanceStarted } from './delayed-delivery.js';
import { type BootPhase, type BootRecord, bootPhase, type SimulatorState } from './state.js';
import type { Upstream, UpstreamResponse } from './upstream.js';
import { rejectUnseen, unseenInstances } from './visibility-lag.js';
import type { AwsCall, Reply } from './wire.js';
import { element, items, parseXml, path, replaceChild, serializeXml, text, type XmlElement } from './xml.js';

interface Ec2Filter {
  name: string;
  values: string[];
}

type Ec2Handler = (call: AwsCall) => Promise<Reply>;

const INSTANCE_STATE_FILTERS = new Set(['instance-state-name', 'instance-state-code']);
const STATUS_FILTERS = new Set([
  ...INSTANCE_STATE_FILTERS,
  'instance-status.status',
  'instance-status.reachability',
  'system-status.status',
  'system-status.reachability',
]);

export function createBootTimingHandlers(deps: {
  state: SimulatorState;
  upstream: Upstream;
  clock: () => number;
}): Record<string, Ec2Handler> {
  const { state, upstream, clock } = deps;

  function phases(call: AwsCall) {
    const account = state.account(call.accountId);
    const now = clock();
    const phaseOf = (instanceId: string): BootPhase => bootPhase(account.boots.get(instanceId), now);
    const anyIn = (wanted: BootPhase[]) =>
      [...account.boots.values()].some((record) => wanted.includes(bootPhase(record, now)));
    // An impaired check outlives the boot window, so such instances need rewriting for good.
    const anyImpaired = () => [...account.boots.values()].some((record) => record.impaired);
    return { account, now, phaseOf, anyIn, anyImpaired };
  }

  return {
    async RunInstances(call) {
      const response = await upstream.fetch(call);
      const { account, now } = phases(call);
      if (response.status !== 200) return asReply(response);
      const timing = account.bootTiming;
      const { root } = parseXml(response.body.toString('utf8'));
      for (const item of items(path(root, 'instancesSet'))) {
        const instanceId = text(path(item, 'instanceId'));
        if (!instanceId) continue;
        account.launchedAt.set(instanceId, now);
        if (timing) account.boots.set(instanceId, { ...timing, startedAt: now, firstBoot: true });
      }
      return asReply(response);
    },

    async StartInstances(call) {
      const response = await upstream.fetch(call);
      const { account, now } = phases(call);
      if (response.status !== 200) return asReply(response);
      const { root } = parseXml(response.body.toString('utf8'));
      for (const item of items(path(root, 'instancesSet'))) {
        const instanceId = text(path(item, 'instanceId'));
        // Starting an instance that already runs is a no-op in AWS, so it must not boot again.
        if (!instanceId || text(path(item, 'previousState', 'name')) !== 'stopped') continue;
        const timing = account.bootTiming;
        if (timing) account.boots.set(instanceId, { ...timing, startedAt: now, firstBoot: false });
        else account.boots.delete(instanceId);
        instanceStarted(account, instanceId, now + (timing?.pendingMs ?? 0), now);
      }
      return asReply(response);
    },

    async DescribeInstances(call) {
      const { phaseOf, anyIn } = phases(call);
      if (!anyIn(['pending'])) return asReply(await upstream.fetch(call));
      // moto would filter on its own idea of the state, so state filters are applied here instead.
      const { forwarded, held } = holdFilters(call.form, INSTANCE_STATE_FILTERS);
      const response = await upstream.fetch(call, Buffer.from(forwarded.toString()));
      if (response.status !== 200) return asReply(response);
      const doc = parseXml(response.body.toString('utf8'));
      const reservationSet = path(doc.root, 'reservationSet');
      if (reservationSet) {
        reservationSet.children = reservationSet.children.filter((reservation) => {
          if (typeof reservation === 'string') return true;
          const instancesSet = path(reservation, 'instancesSet');
          if (!instancesSet) return true;
          instancesSet.children = instancesSet.children.filter((item) => {
            if (typeof item === 'string') return true;
            const instanceId = text(path(item, 'instanceId')) ?? '';
            if (stateName(item) === 'running' && phaseOf(instanceId) === 'pending') {
              replaceChild(item, stateElement('instanceState', 'pending', 0));
            }
            return matches(held, (name) =>
              name === 'instance-state-name' ? stateName(item) : text(path(item, 'instanceState', 'code')),
            );
          });
          return items(instancesSet).length > 0;
        });
      }
      return asReply(response, serializeXml(doc));
    },

    async DescribeInstanceStatus(call) {
      const { account, now, phaseOf, anyIn, anyImpaired } = phases(call);
      const unseen = unseenInstances(account, now);
      rejectUnseen(call.form, unseen);
      if (!anyIn(['pending', 'initializing']) && !anyImpaired() && unseen.size === 0)
        return asReply(await upstream.fetch(call));
      const includeAll = call.form.get('IncludeAllInstances') === 'true';
      const { forwarded, held } = holdFilters(call.form, STATUS_FILTERS);
      const response = await upstream.fetch(call, Buffer.from(forwarded.toString()));
      if (response.status !== 200) return asReply(response);
      const doc = parseXml(response.body.toString('utf8'));
      const statusSet = path(doc.root, 'instanceStatusSet');
      if (statusSet) {
        statusSet.children = statusSet.children.filter((item) => {
          if (typeof item === 'string') return true;
          const instanceId = text(path(item, 'instanceId')) ?? '';
          if (unseen.has(instanceId)) return false;
          const phase = phaseOf(instanceId);
          if (stateName(item) === 'running' && phase === 'pending') {
            // Like AWS, a pending instance is only listed when the caller asks for all instances.
            if (!includeAll) return false;
            replaceChild(item, stateElement('instanceState', 'pending', 0));
            replaceChild(item, element('instanceStatus', [element('status', 'not-applicable')]));
            replaceChild(item, element('systemStatus', [element('status', 'not-applicable')]));
          } else if (stateName(item) === 'running' && phase === 'initializing') {
            replaceChild(item, checkElement('instanceStatus', 'initializing'));
            replaceChild(item, checkElement('systemStatus', 'initializing'));
          } else if (stateName(item) === 'running') {
            impair(item, account.boots.get(instanceId));
          }
          return matches(held, (name) => statusValue(item, name));
        });
      }
      return asReply(response, serializeXml(doc));
    },
  };
}

function asReply(response: UpstreamResponse, body?: string): Reply {
  return { status: response.status, headers: response.headers, body: body ?? response.body };
}

function stateName(item: XmlElement): string | undefined {
  return text(path(item, 'instanceState', 'name'));
}

function stateElement(name: string, state: string, code: number): XmlElement {
  return element(name, [element('code', String(code)), element('name', state)]);
}

function checkElement(
  name: string,
  status: string,
  reachability = status,
  impairedSince?: number,
): XmlElement {
  const detail = [element('name', 'reachability'), element('status', reachability)];
  if (impairedSince !== undefined)
    detail.push(element('impairedSince', new Date(impairedSince).toISOString()));
  return element(name, [element('details', [element('item', detail)]), element('status', status)]);
}

/** Fails the chosen check the way AWS shows it, from the end of initializing; moto's `ok` stays on the other. */
function impair(item: XmlElement, record: BootRecord | undefined): void {
  if (!record?.impaired) return;
  const since = record.startedAt + record.pendingMs + record.initializingMs;
  const name = record.impaired === 'system' ? 'systemStatus' : 'instanceStatus';
  replaceChild(item, checkElement(name, 'impaired', 'failed', since));
}

function statusValue(item: XmlElement, filter: string): string | undefined {
  switch (filter) {
    case 'instance-state-name':
      return stateName(item);
    case 'instance-state-code':
      return text(path(item, 'instanceState', 'code'));
    case 'instance-status.status':
      return text(path(item, 'instanceStatus', 'status'));
    case 'system-status.status':
      return text(path(item, 'systemStatus', 'status'));
    case 'instance-status.reachability':
      return reachability(path(item, 'instanceStatus'));
    case 'system-status.reachability':
      return reachability(path(item, 'systemStatus'));
    default:
      return undefined;
  }
}

function reachability(check: XmlElement | undefined): string | undefined {
  const detail = items(path(check, 'details')).find((d) => text(path(d, 'name')) === 'reachability');
  return text(path(detail, 'status'));
}

/** EC2 filters: every filter must match, any of its values may; values allow `*` and `?` wildcards. */
function matches(filters: Ec2Filter[], lookup: (name: string) => string | undefined): boolean {
  return filters.every((filter) => {
    const value = lookup(filter.name);
    return value !== undefined && filter.values.some((pattern) => glob(pattern).test(value));
  });
}

function glob(pattern: string): RegExp {
  const source = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${source}$`);
}

/** Splits `Filter.N.*` params into those moto keeps and those held back, renumbering what is forwarded. */
function holdFilters(
  form: URLSearchParams,
  names: Set<string>,
): { forwarded: URLSearchParams; held: Ec2Filter[] } {
  const byIndex = new Map<number, Ec2Filter>();
  const forwarded = new URLSearchParams();
  for (const [key, value] of form) {
    const nameKey = /^Filter\.(\d+)\.Name$/.exec(key);
    const valueKey = /^Filter\.(\d+)\.Value\.(\d+)$/.exec(key);
    if (!nameKey && !valueKey) {
      forwarded.append(key, value);
      continue;
    }
    const index = Number((nameKey ?? valueKey)?.[1]);
    const filter = byIndex.get(index) ?? { name: '', values: [] };
    if (nameKey) filter.name = value;
    else filter.values.push(value);
    byIndex.set(index, filter);
  }
  const kept: Ec2Filter[] = [];
  const held: Ec2Filter[] = [];
  for (const [, filter] of [...byIndex].sort(([a], [b]) => a - b)) {
    (names.has(filter.name) ? held : kept).push(filter);
  }
  kept.forEach((filter, i) => {
    forwarded.append(`Filter.${i + 1}.Name`, filter.name);
    filter.values.forEach((value, j) => {
      forwarded.append(`Filter.${i + 1}.Value.${j + 1}`, value);
    });
  });
  return { forwarded, held };
}
