export type FaultKind = FaultSpec['kind'];

interface FaultTarget {
  /** The API operation (`SendCommand`, `DescribeInstances`), or `*` for every operation. */
  operation: string;
  /** Chance per matching call, drawn from the simulator's seeded generator; 1 when omitted. */
  rate?: number;
  /** How many calls the fault hits before it retires itself; unlimited when omitted. */
  count?: number;
}

/** The service's own throttling or internal error, in the code each protocol uses for it. */
export interface ThrottleOrServerFault extends FaultTarget {
  kind: 'throttle' | 'server-error';
}

export interface LatencyFault extends FaultTarget {
  kind: 'latency';
  /** How long the answer is held back (real time, not the injected clock). */
  latencyMs?: number;
}

/** Any error AWS can answer with, such as `InsufficientInstanceCapacity`, which moto never does. */
export interface ErrorFault extends FaultTarget {
  kind: 'error';
  /** The AWS error code; the SDK turns it into the thrown error's `name`. */
  code: string;
  /** `Injected error` when omitted. */
  message?: string;
  /** The HTTP status, 400..599; 400 when omitted. */
  status?: number;
}

export type FaultSpec = ThrottleOrServerFault | LatencyFault | ErrorFault;

/** What AWS error codes look like (`InvalidAMIID.NotFound`); also keeps the XML envelope well-formed. */
export const ERROR_CODE = /^[A-Za-z][A-Za-z0-9.]{0,99}$/;

type FaultRule = FaultSpec & {
  id: string;
  accountId: string;
  remaining: number | undefined;
};

/** The error a faulted call answers with; the protocol decides its wire shape. */
export type FaultError =
  | { kind: 'throttle' }
  | { kind: 'server-error' }
  | { kind: 'error'; code: string; message: string; status: number };

export interface FaultDecision {
  latencyMs: number;
  error: FaultError | undefined;
}

export interface Faults {
  add(accountId: string, spec: FaultSpec): string;
  clear(accountId?: string): void;
  decide(accountId: string, operation: string): FaultDecision;
}

export function createFaults(random: () => number): Faults {
  let rules: FaultRule[] = [];
  let nextId = 1;
  return {
    add(accountId, spec) {
      if (spec.rate !== undefined && !(spec.rate >= 0 && spec.rate <= 1)) {
        throw new Error(`fault rate must be within 0..1, got ${spec.rate}`);
      }
      if (spec.count !== undefined && !(Number.isInteger(spec.count) && spec.count > 0)) {
        throw new Error(`fault count must be a positive integer, got ${spec.count}`);
      }
      if (spec.kind === 'latency' && !(spec.latencyMs !== undefined && spec.latencyMs >= 0)) {
        throw new Error('a latency fault needs latencyMs >= 0');
      }
      if (spec.kind === 'error') checkErrorFault(spec);
      const id = `fault-${nextId++}`;
      rules.push({ ...spec, id, accountId, remaining: spec.count });
      return id;
    },
    clear(accountId) {
      rules = accountId ? rules.filter((r) => r.accountId !== accountId) : [];
    },
    decide(accountId, operation) {
      const decision: FaultDecision = { latencyMs: 0, error: undefined };
      for (const rule of rules) {
        if (rule.accountId !== '*' && rule.accountId !== accountId) continue;
        if (rule.operation !== '*' && rule.operation !== operation) continue;
        // An error fault that cannot change the outcome must not use up its count or a random draw.
        if (rule.kind !== 'latency' && decision.error) continue;
        if (rule.rate !== undefined && random() >= rule.rate) continue;
        if (rule.remaining !== undefined) rule.remaining -= 1;
        if (rule.kind === 'latency') decision.latencyMs += rule.latencyMs ?? 0;
        else decision.error = errorOf(rule);
      }
      rules = rules.filter((r) => r.remaining === undefined || r.remaining > 0);
      return decision;
    },
  };
}

function checkErrorFault(spec: ErrorFault): void {
  if (typeof spec.code !== 'string' || !ERROR_CODE.test(spec.code)) {
    throw new Error(`an error fault needs a code like InvalidAMIID.NotFound, got ${spec.code}`);
  }
  // Below 400 the SDK would read the answer as a success or a redirect, not as the error asked for.
  if (
    spec.status !== undefined &&
    !(Number.isInteger(spec.status) && spec.status >= 400 && spec.status <= 599)
  ) {
    throw new Error(`an error fault status must be an integer within 400..599, got ${spec.status}`);
  }
}

function errorOf(rule: ThrottleOrServerFault | ErrorFault): FaultError {
  if (rule.kind !== 'error') return { kind: rule.kind };
  return {
    kind: 'error',
    code: rule.code,
    message: rule.message ?? 'Injected error',
    status: rule.status ?? 400,
  };
}

/** mulberry32: tiny, seedable, and good enough to make "30% of calls fail" repeatable. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
