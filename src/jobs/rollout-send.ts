import { setTimeout as sleep } from 'node:timers/promises';
import { isThrottlingAwsError } from '../core/aws-errors.js';
import { type AgentPing, InstancesRejected } from '../core/ports/run-command.js';
import { unreachableAmong } from './reachability.js';
import { type Batch, defaultListingLagMs, documentFor, type Run, type SsmCall } from './rollout-run.js';

/**
 * Sending a rollout's batches so that none is ever sent twice: each send is marked in the job's
 * record before SendCommand and its command id written right after, and the Comment `<job>:<batch>`
 * finds a send whose answer never arrived (a crash, a 5xx, a network error).
 */

/** This worker no longer owns the job; whoever does carries on from the saved record. */
export class LockLost extends Error {
  constructor(jobId: string) {
    super(`job ${jobId} was taken over by another worker`);
    this.name = 'LockLost';
  }
}

const clockSkewMarginMs = 15 * 60_000;
// How long an agent seen online counts as online for a send: one that dropped off since makes SSM
// refuse the batch, which sendBatch handles by asking again.
const agentCheckMs = 15_000;

/**
 * Right before a wave goes out: one DescribeInstances (per 200 ids) over the wave, and one
 * DescribeInstanceInformation per 50 running ids whose agent was not looked at within the last
 * `agentCheckMs`. Each such call also covers the planned ids in `lookahead`, up to 50 ids a call,
 * so a rollout refilling a few slots at a time pays one agent check per 50 instances, not one per
 * send. `fresh` asks SSM again about every id (after SSM refused a send). Returns how many it
 * found unreachable.
 */
export async function skipUnreachable(
  run: Run,
  ids: string[],
  options: { lookahead?: readonly string[]; fresh?: boolean } = {},
): Promise<number> {
  const states = run.listed ?? (await run.aws.run(() => run.deps.fleet.states(ids)));
  run.listed = undefined;
  const running = ids.filter((id) => states.get(id) === 'running');
  const checkedSince = run.now() - agentCheckMs;
  const known = (id: string) => !options.fresh && (run.agentsSeen.get(id)?.at ?? -Infinity) >= checkedSince;
  const stale = running.filter((id) => !known(id));
  if (stale.length > 0) {
    const room = Math.ceil(stale.length / 50) * 50 - stale.length;
    const extra = (options.lookahead ?? []).filter((id) => !known(id) && !stale.includes(id)).slice(0, room);
    const toCheck = [...stale, ...extra];
    for (let i = 0; i < toCheck.length; i += 50) {
      const chunk = toCheck.slice(i, i + 50);
      const pings = await run.budgeted(() => run.deps.runCommand.agents(chunk));
      const at = run.now();
      // An id SSM left out of its answer is one it does not know: remembered as such.
      for (const id of chunk) run.agentsSeen.set(id, { ping: pings.get(id), at });
    }
  }
  const agents = new Map<string, AgentPing>();
  for (const id of running) {
    const ping = run.agentsSeen.get(id)?.ping;
    if (ping) agents.set(id, ping);
  }
  const found = unreachableAmong(ids, states, agents);
  run.markUnreachable(found);
  return found.size;
}

/**
 * The command sent with this comment, if any. Right after SendCommand, ListCommands may not show
 * it yet (SSM is eventually consistent), so "not found" counts only once the listing lag has
 * passed since the send was tried: a batch is never resent just because the listing lagged.
 */
export async function findSent(
  run: Run,
  comment: string,
  triedAt: number,
  via: SsmCall,
): Promise<string | undefined> {
  const { runCommand } = run.deps;
  // The comment is unique to this job; the margin covers a bot clock ahead of AWS's.
  const sentAfter = new Date(run.record.startedAt - clockSkewMarginMs);
  const listingLagMs = run.settings.listingLagMs ?? defaultListingLagMs;
  const found = await via(() => runCommand.findByComment(comment, sentAfter));
  const lagLeft = triedAt + listingLagMs - run.now();
  if (found || lagLeft <= 0) return found;
  run.log.info(
    { comment, waitMs: lagLeft },
    'send not listed yet; looking again once the listing lag has passed',
  );
  await sleep(lagLeft);
  return via(() => runCommand.findByComment(comment, sentAfter));
}

/**
 * Sends one batch of the wave: marked `sending` first, `sent` with its command id after (or `done`
 * when nothing in it could be reached).
 */
export async function sendBatch(run: Run, index: number, batch: Batch): Promise<void> {
  batch.state = 'sending';
  // A crash after this write is found by its comment; a resumed job comes back long after
  // (a worker's lock outlives the listing lag), and this mark tells it how long ago it was.
  batch.sendingAt = run.now();
  await run.save();
  const comment = `${run.job.id}:${index}`;
  for (;;) {
    try {
      batch.commandId = await sendOnce(run, batch, comment);
      break;
    } catch (error) {
      if (!(error instanceof InstancesRejected)) throw error;
      // One id that became unreachable between the wave's check and this send fails the
      // whole batch in SSM: the rest goes without it. A fresh look says why; where it finds
      // nothing (SSM's own view lags), the ids SSM named in its refusal are left out.
      run.listed = undefined;
      if ((await skipUnreachable(run, run.sendable(batch), { fresh: true })) === 0) {
        const named = error.instanceIds.filter((id) => run.sendable(batch).includes(id));
        if (named.length === 0) throw error;
        run.markUnreachable(new Map(named.map((id) => [id, 'refused by SSM'])));
      }
      await run.save();
      if (run.sendable(batch).length === 0) break;
    }
  }
  batch.state = batch.commandId ? 'sent' : 'done';
  await run.save();
}

// SendCommand takes no idempotency token. A throttled send never ran and is simply sent again;
// after a 5xx or a network error it may have run, so its Comment is looked up first.
function sendOnce(run: Run, batch: Batch, comment: string): Promise<string> {
  const { job, deps, request, settings } = run;
  let maybeSentAt: number | undefined;
  return run.aws.run(async () => {
    if (maybeSentAt !== undefined) {
      const found = await findSent(run, comment, maybeSentAt, run.paced);
      if (found) return found;
      maybeSentAt = undefined;
    }
    await deps.ssmPacer.wait();
    // Checked after the budget's wait, right before sending: a worker that lost the job
    // must not send a batch its successor may be sending too.
    if (job.holdsLock && !(await job.holdsLock())) throw new LockLost(job.id);
    const triedAt = run.now();
    try {
      const { document, parameters } = documentFor(request, settings);
      return await deps.runCommand.sendBatch({
        instanceIds: run.sendable(batch),
        document,
        parameters,
        comment,
        timeoutSeconds: settings.commandTimeoutSeconds,
      });
    } catch (error) {
      if (!isThrottlingAwsError(error)) maybeSentAt = triedAt;
      throw error;
    }
  });
}
