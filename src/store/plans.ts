import { randomBytes } from 'node:crypto';
import type { MessageRef } from '../core/chat.js';
import type { RolloutRequest } from '../core/rollout-request.js';
import type { RedisClient } from './redis.js';

export interface Plan {
  id: string;
  /** The request's identity (rolloutKey), to find duplicates. */
  key: string;
  request: RolloutRequest;
  requestedBy: string;
  matched: number;
  message: MessageRef;
  expiresAt: string;
  /** A plan for recurring runs: approving it creates the schedule instead of running once. */
  schedule?: { cron: string; channel: string };
}

/** What is left of a plan that expired without approval: enough to say so on its message. */
export interface ExpiredPlan {
  id: string;
  title: string;
  message: MessageRef;
  expiresAt: string;
}

/** Long enough for a worker that was down when a plan expired to still find and report it. */
const expiryReportGraceMs = 24 * 60 * 60 * 1000;

/**
 * Rollout plans waiting for approval, and the identity of each request so a repeated /deploy
 * finds the plan or job it duplicates. Plans expire by themselves (Redis TTL).
 */
export interface Plans {
  /** `title` names the plan in the note its expiry leaves on its message. */
  save(plan: Plan, ttlMs: number, title: string): Promise<void>;
  get(id: string): Promise<Plan | undefined>;
  /** Removes the plan so it can be approved (or cancelled) once; undefined if gone or expired. */
  take(id: string): Promise<Plan | undefined>;
  /**
   * A plan that expired without being handled, handed out once: `pending` while it can still be
   * approved, undefined when it was handled (or its expiry already reported).
   */
  expired(id: string): Promise<ExpiredPlan | 'pending' | undefined>;
  /** What an identical request already became: a pending plan, or a job. */
  existing(key: string): Promise<{ planId?: string; jobId?: string } | undefined>;
  markStarted(key: string, jobId: string): Promise<void>;
  forget(key: string): Promise<void>;
  /** /cancel of a running job: the worker sees it on its next tick, wherever it runs. */
  requestCancel(jobId: string): Promise<void>;
  isCancelled(jobId: string): Promise<boolean>;
}

export function newPlanId(): string {
  return randomBytes(6).toString('hex');
}

/**
 * One key per plan, kept past its expiry (`expiresAt`) so the expiry can be reported on its message:
 * a plan past `expiresAt` can no longer be approved, and `expired` hands it out once.
 */
const takeScript = `
local raw = redis.call('GET', KEYS[1])
if not raw then return nil end
local expired = tonumber(cjson.decode(raw).expiresAtMs) <= tonumber(ARGV[1])
if ARGV[2] == 'pending' and expired then return nil end
if ARGV[2] == 'expired' and not expired then return 'pending' end
redis.call('DEL', KEYS[1])
return raw`;

interface Stored extends Plan {
  title: string;
  expiresAtMs: number;
}

export function createPlans(redis: RedisClient, prefix: string, now: () => number = Date.now): Plans {
  const planKey = (id: string) => `${prefix}:plan:${id}`;
  const dedupeKey = (key: string) => `${prefix}:rollout-key:${key}`;
  const cancelKey = (jobId: string) => `${prefix}:cancel:${jobId}`;
  const read = (raw: string | null | undefined): Stored | undefined =>
    raw ? (JSON.parse(raw) as Stored) : undefined;
  const pending = (plan: Stored | undefined) => (plan && plan.expiresAtMs > now() ? plan : undefined);
  // ARGV[2]: 'pending' takes a plan that may still be approved, 'expired' one whose time is up.
  const take = (id: string, which: 'pending' | 'expired') =>
    redis.eval(takeScript, 1, planKey(id), String(now()), which) as Promise<string | null>;
  return {
    async save(plan, ttlMs, title) {
      const stored: Stored = { ...plan, title, expiresAtMs: Date.parse(plan.expiresAt) };
      await redis
        .multi()
        .set(planKey(plan.id), JSON.stringify(stored), 'PX', ttlMs + expiryReportGraceMs)
        .set(dedupeKey(plan.key), `plan:${plan.id}`, 'PX', ttlMs)
        .exec();
    },
    async get(id) {
      return pending(read(await redis.get(planKey(id))));
    },
    async take(id) {
      return read(await take(id, 'pending'));
    },
    async expired(id) {
      const raw = await take(id, 'expired');
      if (raw === 'pending') return 'pending';
      const plan = read(raw);
      return plan && { id: plan.id, title: plan.title, message: plan.message, expiresAt: plan.expiresAt };
    },
    async existing(key) {
      const value = await redis.get(dedupeKey(key));
      if (!value) return undefined;
      const [kind, id] = value.split(':', 2);
      if (kind === 'plan' && id && pending(read(await redis.get(planKey(id))))) return { planId: id };
      if (kind === 'job' && id) return { jobId: value.slice(4) };
      return undefined;
    },
    async markStarted(key, jobId) {
      await redis.set(dedupeKey(key), `job:${jobId}`, 'PX', 7 * 86_400_000);
    },
    async forget(key) {
      await redis.del(dedupeKey(key));
    },
    async requestCancel(jobId) {
      await redis.set(cancelKey(jobId), '1', 'PX', 7 * 86_400_000);
    },
    async isCancelled(jobId) {
      return (await redis.exists(cancelKey(jobId))) === 1;
    },
  };
}
