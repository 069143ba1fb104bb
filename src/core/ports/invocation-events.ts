import type { InvocationStatus } from './run-command.js';

/**
 * Run Command's word that an invocation changed status, as EventBridge delivers it ("EC2 Command
 * Invocation Status-change Notification"). Events may arrive late, twice, out of order or never:
 * a rollout takes them as a hint to act sooner, and its polling stays the truth.
 */
export interface InvocationEvent {
  commandId: string;
  instanceId: string;
  status: InvocationStatus;
}

/** Every worker hears every event, whichever worker took it off the queue. */
export interface InvocationEvents {
  /** Calls `listener` with each batch of events from now on; the returned function stops that. */
  subscribe(listener: (events: readonly InvocationEvent[]) => void): () => void;
}
