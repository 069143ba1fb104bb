import { describe, expect, it } from 'vitest';
import { createFleetView } from '../../src/core/fleet-view.js';
import type { Fleet, FleetInstance, InstanceState } from '../../src/core/ports/fleet.js';
import type { RunCommand } from '../../src/core/ports/run-command.js';

/** The view's sharing rules against fakes that count calls and answer only when the test says so. */

interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve: (value: T) => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const instance = (id: string, state: InstanceState = 'running'): FleetInstance => ({
  id,
  arn: `arn:aws:ec2:us-east-1:123456789012:instance/${id}`,
  userId: id.slice(-4),
  state,
  tags: {},
});

const notUsed = () => Promise.reject(new Error('not used by the view'));

/** Each list() and agentsOnline() waits on its own deferred, in call order. */
function fakes() {
  const lists: Deferred<FleetInstance[]>[] = [];
  const sweeps: { ids: readonly string[]; answer: Deferred<Map<string, boolean>> }[] = [];
  const fleet: Fleet = {
    list() {
      const d = deferred<FleetInstance[]>();
      lists.push(d);
      return d.promise;
    },
    checkOwner: notUsed,
    findForUser: notUsed,
    get: notUsed,
    states: notUsed,
    launch: notUsed,
    health: notUsed,
    stop: notUsed,
    start: notUsed,
    terminate: notUsed,
  };
  const runCommand: RunCommand = {
    agentsOnline(ids) {
      const answer = deferred<Map<string, boolean>>();
      sweeps.push({ ids, answer });
      return answer.promise;
    },
    sendBatch: notUsed,
    listInvocations: notUsed,
    cancel: notUsed,
    findByComment: notUsed,
    send: notUsed,
    invocation: notUsed,
    agents: notUsed,
    patchStates: notUsed,
  };
  return { fleet, runCommand, lists, sweeps };
}

/** Lets every promise callback queued so far run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

function listAt(list: Deferred<FleetInstance[]>[] | undefined, i: number) {
  const d = list?.[i];
  if (!d) throw new Error(`no call ${i} was made`);
  return d;
}

const fleetOf = [instance('i-0000000000000a001'), instance('i-0000000000000a002')];
const online = new Map([
  ['i-0000000000000a001', true],
  ['i-0000000000000a002', false],
]);

describe('fleet view', () => {
  it('when 60 readers ask for a snapshot at once, then the fleet is listed once and its agents swept once', async () => {
    const { fleet, runCommand, lists, sweeps } = fakes();
    let clock = 1_000;
    const view = createFleetView(fleet, runCommand, { cacheMs: 5000, now: () => clock });

    const readers = Array.from({ length: 60 }, () => view.snapshot());
    await settle();
    expect(lists).toHaveLength(1);
    expect(sweeps).toHaveLength(0);
    clock += 200;
    listAt(lists, 0).resolve(fleetOf);
    await settle();
    expect(sweeps.map((s) => s.ids)).toEqual([fleetOf.map((i) => i.id)]);
    sweeps[0]?.answer.resolve(online);

    const snapshots = await Promise.all(readers);
    expect(new Set(snapshots).size).toBe(1);
    expect(snapshots[0]).toEqual({ instances: fleetOf, agentsOnline: online, readAt: new Date(1_000) });
    expect(lists).toHaveLength(1);
    expect(sweeps).toHaveLength(1);
  });

  it('when the cache period has passed, then the next reader causes a new read, and not before', async () => {
    const { fleet, runCommand, lists, sweeps } = fakes();
    let clock = 0;
    const view = createFleetView(fleet, runCommand, { cacheMs: 5000, now: () => clock });

    const first = view.snapshot();
    await settle();
    listAt(lists, 0).resolve(fleetOf);
    await settle();
    sweeps[0]?.answer.resolve(online);
    await first;

    // The period counts from the listing's answer (at 0 here).
    clock = 4999;
    await view.snapshot();
    await view.instances();
    expect(lists).toHaveLength(1);
    expect(sweeps).toHaveLength(1);

    clock = 5000;
    const second = view.snapshot();
    await settle();
    expect(lists).toHaveLength(2);
    listAt(lists, 1).resolve([instance('i-0000000000000b001')]);
    await settle();
    sweeps[1]?.answer.resolve(new Map([['i-0000000000000b001', true]]));
    expect((await second).instances.map((i) => i.id)).toEqual(['i-0000000000000b001']);
    expect((await second).readAt).toEqual(new Date(5000));
  });

  it('when the listing fails, then every reader sharing it gets the error and the next reader lists again', async () => {
    const { fleet, runCommand, lists, sweeps } = fakes();
    const view = createFleetView(fleet, runCommand, { cacheMs: 60_000, now: () => 0 });

    const readers = [view.snapshot(), view.snapshot(), view.instances()];
    await settle();
    expect(lists).toHaveLength(1);
    listAt(lists, 0).reject(new Error('RequestLimitExceeded'));
    for (const reader of readers) await expect(reader).rejects.toThrow('RequestLimitExceeded');
    expect(sweeps).toHaveLength(0);

    const again = view.snapshot();
    await settle();
    expect(lists).toHaveLength(2);
    listAt(lists, 1).resolve(fleetOf);
    await settle();
    sweeps[0]?.answer.resolve(online);
    expect((await again).agentsOnline).toEqual(online);
  });

  it('when the agent sweep fails, then its sharers get the error and the next snapshot sweeps again over the same listing', async () => {
    const { fleet, runCommand, lists, sweeps } = fakes();
    const view = createFleetView(fleet, runCommand, { cacheMs: 60_000, now: () => 0 });

    const readers = [view.snapshot(), view.snapshot()];
    await settle();
    listAt(lists, 0).resolve(fleetOf);
    await settle();
    sweeps[0]?.answer.reject(new Error('ThrottlingException'));
    for (const reader of readers) await expect(reader).rejects.toThrow('ThrottlingException');

    const again = view.snapshot();
    await settle();
    expect(sweeps).toHaveLength(2);
    sweeps[1]?.answer.resolve(online);
    expect((await again).agentsOnline).toEqual(online);
    expect(lists).toHaveLength(1);
  });

  it('when only the instances are wanted, then no agent is swept, and a snapshot in the same period reuses that listing', async () => {
    const { fleet, runCommand, lists, sweeps } = fakes();
    let clock = 0;
    const view = createFleetView(fleet, runCommand, { cacheMs: 5000, now: () => clock });

    const plan = view.instances();
    await settle();
    listAt(lists, 0).resolve(fleetOf);
    expect(await plan).toEqual(fleetOf);
    await settle();
    expect(sweeps).toHaveLength(0);

    clock = 3000;
    const page = view.snapshot();
    await settle();
    expect(lists).toHaveLength(1);
    expect(sweeps).toHaveLength(1);
    sweeps[0]?.answer.resolve(online);
    expect((await page).instances).toEqual(fleetOf);

    // A reader's own copy: sorting it must not reorder what the next reader gets.
    (await view.instances()).reverse();
    expect(await view.instances()).toEqual(fleetOf);
    expect(lists).toHaveLength(1);
  });

  it('when the cache is 0, then only reads in flight are shared, the agent sweep included', async () => {
    const { fleet, runCommand, lists, sweeps } = fakes();
    const view = createFleetView(fleet, runCommand, { cacheMs: 0, now: () => 0 });

    const early = [view.snapshot(), view.instances()];
    await settle();
    expect(lists).toHaveLength(1);
    listAt(lists, 0).resolve(fleetOf);
    await settle();
    expect(sweeps).toHaveLength(1);
    // Listed, still sweeping: a snapshot joins the sweep, a listing-only reader lists anew.
    const joining = view.snapshot();
    const listingOnly = view.instances();
    await settle();
    expect(lists).toHaveLength(2);
    listAt(lists, 1).resolve(fleetOf);
    await settle();
    expect(sweeps).toHaveLength(1);
    sweeps[0]?.answer.resolve(online);
    await Promise.all([...early, joining, listingOnly]);
    expect(await joining).toBe(await early[0]);

    const later = view.snapshot();
    await settle();
    expect(lists).toHaveLength(3);
    listAt(lists, 2).resolve(fleetOf);
    await settle();
    expect(sweeps).toHaveLength(2);
    sweeps[1]?.answer.resolve(online);
    await later;
  });

  it('when terminated instances are listed, then they are shown but their agents are not asked for', async () => {
    const { fleet, runCommand, lists, sweeps } = fakes();
    const view = createFleetView(fleet, runCommand, { cacheMs: 5000, now: () => 0 });
    const gone = instance('i-0000000000000c001', 'terminated');

    const reader = view.snapshot();
    await settle();
    listAt(lists, 0).resolve([...fleetOf, gone]);
    await settle();
    expect(sweeps[0]?.ids).toEqual(fleetOf.map((i) => i.id));
    sweeps[0]?.answer.resolve(online);
    expect((await reader).instances).toContain(gone);
  });

  it('when no listed instance is left to ask, then the snapshot comes without any agent sweep', async () => {
    const { fleet, runCommand, lists, sweeps } = fakes();
    const view = createFleetView(fleet, runCommand, { cacheMs: 5000, now: () => 0 });

    const reader = view.snapshot();
    await settle();
    listAt(lists, 0).resolve([instance('i-0000000000000c001', 'terminated')]);
    expect((await reader).agentsOnline.size).toBe(0);
    expect(sweeps).toHaveLength(0);
  });
});
