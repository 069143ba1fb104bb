import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { MessageRef } from '../core/chat.js';
import type { RolloutRequest } from '../core/rollout-request.js';

export interface Plan {
  id: string;
  /** The request's identity (rolloutKey), to find duplicates. */
  key: string;
  request: RolloutRequest;
  requestedBy: string;
  matched: number;
  message: MessageRef;
  expiresAt: string;
}

/**
 * Rollout plans waiting for approval, and the identity of each request so a repeated /deploy
 * finds the plan or job it duplicates. Plans expire by themselves (Redis TTL).
 */
export interface Plans {
  save(plan: Plan, ttlMs: number): Promise<void>;
  get(id: string): Promise<Plan | undefined>;
  /** Removes the plan so it can be approved (or cancelled) once; undefined if gone or expired. */
  take(id: string): Promise<Plan | undefined>;
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

export function createPlans(redis: Redis, prefix: string): Plans {
  const planKey = (id: string) => `${prefix}:plan:${id}`;
  const dedupeKey = (key: string) => `${prefix}:rollout-key:${key}`;
  const cancelKey = (jobId: string) => `${prefix}:cancel:${jobId}`;
  return {
    async save(plan, ttlMs) {
      await redis
        .multi()
        .set(planKey(plan.id), JSON.stringify(plan), 'PX', ttlMs)
        .set(dedupeKey(plan.key), `plan:${plan.id}`, 'PX', ttlMs)
        .exec();
    },
    async get(id) {
      const raw = await redis.get(planKey(id));
      return raw ? (JSON.parse(raw) as Plan) : undefined;
    },
    async take(id) {
      const raw = await redis.getdel(planKey(id));
      return raw ? (JSON.parse(raw) as Plan) : undefined;
    },
    async existing(key) {
      const value = await redis.get(dedupeKey(key));
      if (!value) return undefined;
      const [kind, id] = value.split(':', 2);
      if (kind === 'plan' && id && (await redis.exists(planKey(id)))) return { planId: id };
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
