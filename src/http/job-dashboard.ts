import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import type { Handler } from 'express';

/**
 * bull-board over fleetbot's queues. Read-only unless actions are allowed explicitly: a retry or
 * a removal from a browser bypasses every check the chat commands make (roles, approvals, audit).
 */
export function jobDashboard(
  queues: readonly Queue[],
  options: { basePath: string; allowActions: boolean },
): Handler {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(options.basePath);
  createBullBoard({
    queues: queues.map(
      (q) =>
        new BullMQAdapter(q, { readOnlyMode: !options.allowActions, allowRetries: options.allowActions }),
    ),
    // @bull-board/express 9.10.1 pins its own copy of @bull-board/api 9.10.1; the adapter's
    // interface is the same in both, only the private fields of their classes differ.
    serverAdapter: serverAdapter as unknown as Parameters<typeof createBullBoard>[0]['serverAdapter'],
    options: { uiConfig: { boardTitle: 'fleetbot jobs' } },
  });
  return serverAdapter.getRouter() as Handler;
}
