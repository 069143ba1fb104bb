/**
 * moto terminates instances without a word to Run Command, so an invocation on an instance that is
 * gone would run on forever. TerminateInstances passes through to moto; for every instance it
 * terminated, the invocations still open there are marked, and command-status.ts ends them the
 * way SSM does (Undeliverable, once SSM has noticed).
 */
import { openInvocations } from './command-status.js';
import type { SimulatorState } from './state.js';
import type { Upstream } from './upstream.js';
import type { AwsCall, Reply } from './wire.js';
import { items, parseXml, path, text } from './xml.js';

const GONE = new Set(['shutting-down', 'terminated']);

export function createTerminationHandlers(deps: {
  state: SimulatorState;
  upstream: Upstream;
  clock: () => number;
}): Record<string, (call: AwsCall) => Promise<Reply>> {
  return {
    async TerminateInstances(call) {
      const response = await deps.upstream.fetch(call);
      if (response.status === 200) {
        const account = deps.state.account(call.accountId);
        const now = deps.clock();
        const { root } = parseXml(response.body.toString('utf8'));
        for (const item of items(path(root, 'instancesSet'))) {
          const instanceId = text(path(item, 'instanceId'));
          if (!instanceId || !GONE.has(text(path(item, 'currentState', 'name')) ?? '')) continue;
          for (const invocation of openInvocations(account.commands, instanceId, now)) {
            invocation.instanceGoneAt ??= now;
            invocation.undeliverableAt ??= now + account.terminationNoticeMs;
          }
        }
      }
      return { status: response.status, headers: response.headers, body: response.body };
    },
  };
}
