import { formatUtc } from '../core/durations.js';
import type { Logger } from '../log.js';
import type { Plans } from '../store/plans.js';
import { deliver } from './delivery.js';
import { editMessage, type Outboxes } from './outboxes.js';
import type { PlanExpiryPayload } from './queues.js';

export interface PlanExpiryDeps {
  plans: Pick<Plans, 'expired'>;
  outboxes: Outboxes;
  /** Slack's chat.update budget for the workspace, shared with every other edit. */
  editBudget: { take(): Promise<void> };
  log: Logger;
}

/** Thrown while the plan can still be approved (this clock ran ahead): the job looks again. */
export class PlanStillPending extends Error {
  constructor(planId: string) {
    super(`plan ${planId} has not expired yet`);
    this.name = 'PlanStillPending';
  }
}

/**
 * A plan nobody approved or cancelled in time says so on its message, and loses its buttons: a
 * press on it could only be refused. A plan that was handled leaves nothing to do.
 */
export async function processPlanExpiry(
  data: PlanExpiryPayload,
  deps: PlanExpiryDeps,
): Promise<'expired' | 'handled'> {
  const plan = await deps.plans.expired(data.planId);
  if (plan === 'pending') throw new PlanStillPending(data.planId);
  if (!plan) return 'handled';
  if (plan.message.platform === 'slack') await deps.editBudget.take();
  await deliver(
    () =>
      editMessage(deps.outboxes, plan.message, {
        text: `Plan expired at ${formatUtc(new Date(plan.expiresAt))} without approval: ${plan.title}. Nothing ran; send the command again if it is still wanted.`,
      }),
    { log: deps.log, what: 'expired plan' },
  );
  deps.log.info({ planId: plan.id }, 'plan expired');
  return 'expired';
}
