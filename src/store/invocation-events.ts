import { Cluster } from 'ioredis';
import { z } from 'zod';
import type { InvocationEvent, InvocationEvents } from '../core/ports/invocation-events.js';
import { invocationStatuses } from '../core/ports/run-command.js';
import type { Logger } from '../log.js';
import type { RedisClient } from './redis.js';

/**
 * Completion events, fanned out to every worker. SQS hands each message to one receiver, while the
 * rollout that owns the command may run in another worker: the receiver publishes what it took off
 * the queue on one Redis channel, and every worker's rollouts hear it. Pub/sub keeps nothing for a
 * worker that is away; a rollout that misses an event reads its command on the safety interval.
 */
export interface InvocationEventBus extends InvocationEvents {
  publish(events: readonly InvocationEvent[]): Promise<void>;
  /** Closes the subscriber connection, if one was opened. */
  stop(): Promise<void>;
}

const wireEvents = z.array(
  z.strictObject({ commandId: z.string(), instanceId: z.string(), status: z.enum(invocationStatuses) }),
);

export function createInvocationEventBus(
  redis: RedisClient,
  prefix: string,
  log: Logger,
): InvocationEventBus {
  const channel = `${prefix}:rollout-events`;
  const listeners = new Set<(events: readonly InvocationEvent[]) => void>();
  let subscriber: RedisClient | undefined;

  const deliver = (message: string) => {
    let events: InvocationEvent[];
    try {
      events = wireEvents.parse(JSON.parse(message));
    } catch (err) {
      log.warn({ err }, 'unreadable message on the rollout events channel');
      return;
    }
    for (const listener of listeners) listener(events);
  };

  return {
    async publish(events) {
      if (events.length > 0) await redis.publish(channel, JSON.stringify(events));
    },
    subscribe(listener) {
      listeners.add(listener);
      if (!subscriber) {
        // A subscribed connection can run nothing else: one of its own, opened on first use.
        const connection: RedisClient = redis instanceof Cluster ? redis.duplicate() : redis.duplicate();
        subscriber = connection;
        connection.on('message', (from: string, message: string) => {
          if (from === channel) deliver(message);
        });
        connection.subscribe(channel).catch((err: unknown) => {
          log.warn({ err }, 'could not subscribe to rollout events; rollouts poll instead');
        });
      }
      return () => listeners.delete(listener);
    },
    async stop() {
      listeners.clear();
      subscriber?.disconnect();
      subscriber = undefined;
    },
  };
}
