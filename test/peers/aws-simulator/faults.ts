export type FaultKind = 'throttle' | 'server-error' | 'latency';

export interface FaultSpec {
  /** The API operation (`SendCommand`, `DescribeInstances`), or `*` for every operation. */
  operation: string;
  kind: FaultKind;
  /** Chance per matching call, drawn from the simulator's seeded generator; 1 when omitted. */
  rate?: number;
  /** How many calls the fault hits before it retires itself; unlimited when omitted. */
  count?: number;
  /** For `latency`: how long the answer is held back (real time, not the injected clock). */
  latencyMs?: number;
}

interface FaultRule extends FaultSpec {
  id: string;
  accountId: string;
  remaining: number | undefined;
}

export interface FaultDecision {
  latencyMs: number;
  error: 'throttle' | 'server-error' | undefined;
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
        else decision.error = rule.kind;
      }
      rules = rules.filter((r) => r.remaining === undefined || r.remaining > 0);
      return decision;
    },
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
