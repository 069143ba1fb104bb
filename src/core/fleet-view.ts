import type { Fleet, FleetInstance } from './ports/fleet.js';
import type { RunCommand } from './ports/run-command.js';

/**
 * The fleet as chat and the dashboard read it: every reader shares one listing in flight and keeps
 * it for a short while. Each `/fleet` listing the whole fleet on its own turned a burst of 60 into
 * 126 DescribeInstances and 130 DescribeInstanceInformation calls and no answer within minutes
 * (throttling multiplies them further); shared, the burst costs one sweep of each.
 *
 * Only reads for people go through here. Jobs list the fleet themselves: a rollout acts on what it
 * lists, so it needs a fresh listing. Writes (launch, stop, terminate…) are never cached, but one that
 * fleetbot itself just made may not show here for up to `cacheMs`: a view a few seconds old is what
 * a person reading the fleet can live with, and evicting on each write would let a burst of writes
 * bring the listing storm back.
 */

export interface FleetSnapshot {
  instances: readonly FleetInstance[];
  /** Instances not terminated, by id; an id missing here had no agent to ask. */
  agentsOnline: ReadonlyMap<string, boolean>;
  /** When the listing was asked for: the data is no older than this. */
  readAt: Date;
}

export interface FleetView {
  /** The listing and the SSM agent of each instance in it, read together. */
  snapshot(): Promise<FleetSnapshot>;
  /** The listing alone: never costs an agent sweep, and shares the listing with `snapshot()`. */
  instances(): Promise<FleetInstance[]>;
}

export interface FleetViewOptions {
  /** How long a finished read serves every reader; 0 shares only reads still in flight. */
  cacheMs: number;
  /** Milliseconds since the epoch; tests move it instead of waiting. */
  now?: () => number;
}

/** One listing and everything read on top of it, alive until it expires. */
interface Read {
  startedAt: number;
  listing: Promise<FleetInstance[]>;
  /** Set once the listing answered; undefined while it is in flight (a failed one is dropped). */
  listedAt?: number;
  snapshot?: Promise<FleetSnapshot>;
  sweeping: boolean;
}

export function createFleetView(fleet: Fleet, runCommand: RunCommand, options: FleetViewOptions): FleetView {
  const now = options.now ?? Date.now;
  let current: Read | undefined;

  // Age counts from the answer, not the request: a listing slower than cacheMs must still serve
  // the readers who arrive right after it, or a large fleet would never be cached at all.
  const usable = (read: Read) => read.listedAt === undefined || now() - read.listedAt < options.cacheMs;

  const read = (): Read => {
    if (current && usable(current)) return current;
    const started: Read = { startedAt: now(), listing: Promise.resolve([]), sweeping: false };
    started.listing = Promise.resolve()
      .then(() => fleet.list())
      .then(
        (instances) => {
          started.listedAt = now();
          return instances;
        },
        (error: unknown) => {
          // Everyone waiting on it gets the error; the next reader tries again.
          if (current === started) current = undefined;
          throw error;
        },
      );
    current = started;
    return started;
  };

  const sweep = (read: Read): Promise<FleetSnapshot> => {
    const swept = read.listing.then(async (instances) => {
      // Terminated instances have no agent left to ask; SSM would only count them offline.
      const ids = instances.filter((i) => i.state !== 'terminated').map((i) => i.id);
      const agentsOnline = ids.length > 0 ? await runCommand.agentsOnline(ids) : new Map<string, boolean>();
      return { instances, agentsOnline, readAt: new Date(read.startedAt) };
    });
    read.sweeping = true;
    swept.then(
      () => {
        read.sweeping = false;
      },
      () => {
        read.sweeping = false;
        // The listing may still be good; only the failed sweep is forgotten.
        if (read.snapshot === swept) read.snapshot = undefined;
      },
    );
    return swept;
  };

  return {
    snapshot() {
      // A sweep in flight is shared even after its listing expired: with cacheMs 0 the listing is
      // over before the sweep, and readers arriving then must still join it.
      const target = current?.sweeping ? current : read();
      target.snapshot ??= sweep(target);
      return target.snapshot;
    },
    async instances() {
      // A copy each: callers may sort or splice what they get without touching other readers'.
      return [...(await read().listing)];
    },
  };
}
