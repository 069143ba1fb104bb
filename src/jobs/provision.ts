import { setTimeout as timerSleep } from 'node:timers/promises';
import { awsErrorCode, transientAwsError } from '../core/aws-errors.js';
import {
  type AwsTrouble,
  type AwsWait,
  AwsWaitExpired,
  createAwsWait,
  describeTrouble,
  waitingLine,
} from '../core/aws-wait.js';
import type { OutgoingMessage } from '../core/chat.js';
import { formatElapsed } from '../core/durations.js';
import type { Fleet, FleetInstance, InstanceHealth, OwnerCheck } from '../core/ports/fleet.js';
import { LaunchError } from '../core/ports/fleet.js';
import { AgentNotRegistered, type RunCommand } from '../core/ports/run-command.js';
import type { SecretStore } from '../core/ports/secret-store.js';
import { BindingRefusedError } from '../core/ports/secret-store.js';
import { provisionStages, renderStages, type Stage, startStages } from '../core/provision-stages.js';
import type { SecretKindName } from '../core/secret-kinds.js';
import type { Logger } from '../log.js';
import type { Pacer } from '../store/rate-limits.js';
import { type HealthPoller, StageTimeout, type TroubleListener } from './health-poller.js';
import { editMessage, type Outboxes } from './outboxes.js';
import { createProgress, type Progress, stoppableEdit } from './progress.js';
import type { ProvisionPayload } from './queues.js';

export interface ProvisionSettings {
  parameterPrefix: string;
  requiredSecrets: readonly SecretKindName[];
  onFailure: 'terminate' | 'keep';
  pollMs: number;
  timeoutsMs: { running: number; checks: number; bootstrap: number };
  bootstrapCheckDocument: string;
  serviceName: string;
  installCommand?: string;
  version?: string;
  alertChannelId?: string;
  /** Minimum time between two edits of the member's progress message. */
  editIntervalMs: number;
}

export interface ProvisionDeps {
  fleet: Fleet;
  runCommand: RunCommand;
  secrets: SecretStore;
  poller: HealthPoller;
  launchPacer: Pacer;
  outboxes: Outboxes;
  settings: ProvisionSettings;
  log: Logger;
  /** The clock the stages' deadlines and the reported time taken are read from; Date.now when absent. */
  now?: () => number;
  /** How the job waits between its own reads of AWS; node's timers when absent. */
  sleep?: (ms: number) => Promise<void>;
}

/** The slice of a BullMQ job the processor needs; its data is the crash-safe record of progress. */
export interface ProvisionJob {
  id: string;
  timestamp: number;
  data: ProvisionPayload;
  updateData(data: ProvisionPayload): Promise<void>;
  /** Told each stage as it begins, so a failure the processor cannot explain can still say where. */
  onStage?(stage: Stage): void;
}

/** A provision that cannot succeed by retrying; its message is written for the member. */
export class ProvisionFailed extends Error {
  constructor(
    readonly userMessage: string,
    readonly instanceId?: string,
  ) {
    super(userMessage);
    this.name = 'ProvisionFailed';
  }
}

/**
 * The instance the job was about to act on is not this member's (its record in Redis may have been
 * changed): nothing was bound, started or terminated, and nothing is cleaned up, since cleaning up
 * would act on that instance too.
 */
export class ForeignInstance extends ProvisionFailed {
  constructor(userMessage: string, instanceId: string) {
    super(userMessage, instanceId);
    this.name = 'ForeignInstance';
  }
}

const sleepOf =
  (deps: ProvisionDeps) =>
  (ms: number): Promise<void> =>
    deps.sleep ? deps.sleep(ms) : timerSleep(ms);

/**
 * How long after sending the bootstrap check its result is first read. The check only reads a file
 * and ends within a second or so, so its answer is usually there by then; a full poll interval
 * would hold a ready server back that long. Later reads back off (see checkReadDelay).
 */
const firstCheckReadMs = 1000;

/**
 * A stage shown only once it lasted this long. A server whose setup finished while its status checks
 * ran goes from "health checks" to ready within one bootstrap check (about a second after the check's
 * first read): a "bootstrapping" edit in between would hold "ready" back a whole edit interval.
 */
const stageSettleMs = 2 * firstCheckReadMs;

/**
 * The wait before the `read`th read (from 0) of one bootstrap check: the first soon, each next one
 * twice as long, never longer than the poll interval, so a check that is slow to come back (an
 * agent that only just registered) costs a few reads, not one per second.
 */
const checkReadDelay = (read: number, pollMs: number): number =>
  Math.min(pollMs, firstCheckReadMs * 2 ** Math.min(read, 30));

/** A wait or a time limit as the member reads it: `45 seconds`, `1 minute`, `15 minutes`. */
const formatWait = (ms: number) => {
  if (ms < 60_000) return `${Math.round(ms / 1000)} seconds`;
  const m = Math.round(ms / 60_000);
  return `${m} minute${m === 1 ? '' : 's'}`;
};

/**
 * Brings a member's server to "ready": launch (or start), then running, status checks ok, and the
 * bootstrap sentinel seen through Run Command. Every step is recorded in the job before the next,
 * so a job restarted after a crash resumes instead of launching a second server.
 *
 * AWS throttling, 5xx and network errors are waited out with backoff for as long as the stage's
 * timeout allows (launching shares the `running` stage's), while the message says it is waiting on
 * AWS; a stage that runs out that way fails naming the AWS error.
 */
export async function processProvision(
  given: ProvisionJob,
  deps: ProvisionDeps,
): Promise<{ instanceId: string }> {
  const { settings } = deps;
  const now = deps.now ?? Date.now;
  // The record as last written, so a repeated step and the failure path see what was already done.
  const job: ProvisionJob = {
    ...given,
    updateData: async (next) => {
      await given.updateData(next);
      job.data = next;
    },
  };
  const data = job.data;
  const log = deps.log.child({ user: data.userId, jobId: job.id, mode: data.mode });
  // A thrown error ends this attempt's edits, so the worker's word on the failure stays the last.
  const edits = stoppableEdit((text) => editMessage(deps.outboxes, data.message, { text }));
  const progress = createProgress(edits.edit, {
    minIntervalMs: settings.editIntervalMs,
    settleMs: stageSettleMs,
    log,
  });
  const view = progressView(given, progress, log, now, sleepOf(deps));
  const { aws } = view;

  let instance: FleetInstance | undefined;
  // Instances this attempt launched or saw EC2 confirm as the member's: the only ones cleanup may
  // terminate. An id read from the job record alone is not enough, since Redis is not trusted.
  const trusted = new Set<string>();
  try {
    view.show(view.stages[0]);
    instance = await aws.run(
      () => ensureInstance(job, deps, log, view.onProfileWait, trusted),
      now() + settings.timeoutsMs.running,
    );
    view.show('running');
    await wait(
      deps,
      instance.id,
      (h) => h?.state === 'running',
      settings.timeoutsMs.running,
      'running',
      (h) =>
        h && ['stopped', 'terminated', 'shutting-down'].includes(h.state)
          ? `Your server stopped while starting (state ${h.state}).`
          : undefined,
      view.onPollTrouble,
    );
    view.show('health checks');
    await wait(
      deps,
      instance.id,
      (h) => h?.system === 'ok' && h.instance === 'ok',
      settings.timeoutsMs.checks,
      'its health checks',
      (h) =>
        h && (h.system === 'impaired' || h.instance === 'impaired')
          ? `Your server failed its health checks (system ${h.system}, instance ${h.instance}).`
          : undefined,
      view.onPollTrouble,
    );
    view.show('bootstrapping');
    await waitForBootstrap(job, deps, instance.id, aws);
    const took = formatElapsed(now() - data.startedAt);
    await progress.finish(`Your server is ready (instance ${instance.id}, took ${took}).`);
    log.info({ instanceId: instance.id, took }, 'instance ready');
    return { instanceId: instance.id };
  } catch (caught) {
    const error =
      caught instanceof AwsWaitExpired
        ? new ProvisionFailed(gaveUpMessage(view.stage(), caught, settings), instance?.id)
        : caught;
    if (!(error instanceof ProvisionFailed)) {
      await edits.stop();
      throw error;
    }
    await settleFailure(error, { job, deps, log, progress, instanceId: instance?.id, trusted });
    throw error;
  }
}

/**
 * The member's progress message: the stages with the current one marked, and a line while the job
 * waits on AWS or on a new instance profile.
 */
function progressView(
  given: ProvisionJob,
  progress: Progress,
  log: Logger,
  now: () => number,
  sleep: (ms: number) => Promise<void>,
) {
  const { mode } = given.data;
  const stages = mode === 'start' ? startStages : provisionStages;
  const title = mode === 'start' ? 'Starting your server' : 'Setting up your server';
  let stage: Stage = stages[0];
  // The shared status poll reports its own trouble; calls this job makes itself report through `aws`.
  let pollTrouble: AwsTrouble | undefined;
  // Set while the launch waits for a new instance profile to become usable.
  let profileWait: string | undefined;
  const render = () => {
    const trouble = aws.trouble() ?? pollTrouble;
    const waiting = trouble ? waitingLine(trouble) : profileWait;
    progress.update(`${title}: ${renderStages(stages, stage)}${waiting ? `\n${waiting}` : ''}`);
  };
  const aws = createAwsWait({
    classify: transientAwsError,
    onChange(trouble, waitedMs) {
      if (trouble) log.warn({ aws: trouble.code, kind: trouble.kind, waitedMs }, 'waiting on AWS');
      else log.info({ waitedMs }, 'AWS answers again');
      render();
    },
    now,
    sleep,
  });
  return {
    aws,
    stages,
    stage: () => stage,
    show(next: Stage) {
      stage = next;
      given.onStage?.(next);
      render();
    },
    onPollTrouble(trouble: AwsTrouble | undefined) {
      pollTrouble = trouble;
      render();
    },
    onProfileWait(waitedMs: number | undefined) {
      const next = waitedMs === undefined ? undefined : profileWaitLine;
      if (next === profileWait) return;
      profileWait = next;
      log.info({ waitedMs }, next ? 'waiting for the instance profile' : 'instance profile accepted');
      render();
    },
  };
}

/**
 * After a provision failed with an answer for the member: tells them, cleans up what this attempt
 * may clean up (a foreign instance is never touched), and alerts the admins.
 */
async function settleFailure(
  error: ProvisionFailed,
  context: {
    job: ProvisionJob;
    deps: ProvisionDeps;
    log: Logger;
    progress: Progress;
    /** The instance this attempt reached, if it got that far. */
    instanceId: string | undefined;
    trusted: ReadonlySet<string>;
  },
): Promise<void> {
  const { job, deps, log, progress, trusted } = context;
  const { fleet, settings } = deps;
  const data = job.data;
  if (error instanceof ForeignInstance) {
    await progress.finish(`${error.userMessage}\nThe admins have been told.`);
    await alertAdmins(deps, {
      text: `Provisioning for Telegram user ${data.userId} was refused (job ${job.id}): instance ${error.instanceId} is not theirs. Nothing was bound, started or terminated; check who can write to Redis.`,
    });
    return;
  }
  const recorded = data.instanceId;
  const instanceId =
    error.instanceId ?? context.instanceId ?? (recorded && trusted.has(recorded) ? recorded : undefined);
  log.warn({ instanceId, reason: error.userMessage }, 'provision failed');
  // The member hears first: cleaning up may itself have to wait out AWS.
  await progress.finish(
    `${error.userMessage}\nThe admins have been told. You can try /provision again later.`,
  );
  let fate = 'nothing was launched';
  if (instanceId && settings.onFailure === 'terminate') {
    const now = deps.now ?? Date.now;
    const cleanup = createAwsWait({ classify: transientAwsError, now, sleep: sleepOf(deps) });
    const until = now() + settings.timeoutsMs.running;
    fate = await cleanup
      .run(() => fleet.terminate(instanceId), until)
      .then(
        () => `instance ${instanceId} was terminated`,
        (err: unknown) => {
          log.warn({ err: String(err) }, 'terminate failed');
          return `instance ${instanceId} could not be terminated (${awsErrorCode(err)}): terminate it by hand`;
        },
      );
    await cleanup
      .run(() => deps.secrets.unbindFromInstance(data.userId, settings.requiredSecrets), until)
      .catch((err: unknown) => log.warn({ err: String(err) }, 'unbind failed'));
  } else if (instanceId) {
    fate = `instance ${instanceId} was kept for an admin to inspect`;
  } else if (recorded) {
    fate = `instance ${recorded}, named by the job's record, was left alone: it was never confirmed as this member's`;
  }
  log.warn({ instanceId, fate }, 'provision cleaned up');
  await alertAdmins(deps, {
    text: `Provisioning for Telegram user ${data.userId} failed (job ${job.id}): ${error.userMessage} ${fate}.`,
  });
}

/** What the member reads when a stage ran out while AWS kept failing. */
function gaveUpMessage(stage: Stage, error: AwsWaitExpired, settings: ProvisionSettings): string {
  const why = describeTrouble(error.trouble, error.waitedMs);
  if (stage === 'bootstrapping')
    return `Your server's setup could not be checked within ${formatWait(settings.timeoutsMs.bootstrap)}: ${why}.`;
  const what = stage === 'starting' ? 'started' : 'launched';
  return `Your server could not be ${what} within ${formatWait(settings.timeoutsMs.running)}: ${why}.`;
}

/** What the member reads while EC2 does not accept the instance profile yet. */
const profileWaitLine =
  "waiting for AWS to accept the server's access role (new ones take a minute or two), retrying…";

async function ensureInstance(
  job: ProvisionJob,
  deps: ProvisionDeps,
  log: Logger,
  onProfileWait: (waitedMs: number | undefined) => void,
  trusted: Set<string>,
): Promise<FleetInstance> {
  const { fleet, settings } = deps;
  const data = job.data;
  // Resuming: the instance was recorded before a crash or retry. Redis is not a trusted source, so
  // the recorded id is acted on (started, bound) only once EC2 says it is this member's.
  if (data.instanceId) {
    const check = await fleet.checkOwner(data.instanceId, data.userId);
    if (check.verdict === 'foreign') throw refused(job, log, data.instanceId, check.problem);
    if (check.verdict === 'owned') {
      const known = check.instance;
      trusted.add(known.id);
      // A start cut short (crash, or AWS failing it) after the instance was recorded.
      if (data.mode === 'start' && known.state === 'stopped') await fleet.start(known.id);
      if (data.boundArn !== known.arn) await bind(job, deps, check);
      return known;
    }
    // Gone or unknown: as before the crash, the member's live instance is looked up or launched.
  }
  // Emulators ignore ClientToken, and a crash can fall between launch and record: look by tag first.
  const existing = await fleet.findForUser(data.userId);
  if (existing) {
    log.info({ instanceId: existing.id, state: existing.state }, 'adopting existing instance');
    await job.updateData({ ...data, instanceId: existing.id });
    const owned = await confirmOwner(job, deps, log, existing.id);
    trusted.add(existing.id);
    if (data.mode === 'start' && existing.state === 'stopped') await fleet.start(existing.id);
    await bind(job, deps, owned);
    return owned.instance;
  }
  if (data.mode === 'start')
    throw new ProvisionFailed('You have no server to start. Send /provision to get one.');

  const stored = new Set((await deps.secrets.list(data.userId)).map((s) => s.kind));
  const missing = settings.requiredSecrets.filter((k) => !stored.has(k));
  if (missing.length > 0) throw new ProvisionFailed(`Store these secrets first: ${missing.join(', ')}.`);

  const bootstrap = {
    parameterPrefix: settings.parameterPrefix,
    userId: data.userId,
    kinds: settings.requiredSecrets,
    serviceName: settings.serviceName,
    installCommand: settings.installCommand,
    version: settings.version,
  };
  await deps.launchPacer.wait();
  let launched: FleetInstance;
  try {
    launched = await fleet.launch({
      userId: data.userId,
      // The same for every attempt of this job: each placement's ClientToken is derived from it.
      clientToken: `fleetbot-${job.id}-${job.timestamp}`,
      bootstrap,
      version: settings.version,
      onProfileWait,
    });
  } catch (error) {
    // Throttling and AWS's own 5xx are waited out by the caller (aws.run), launching again with the
    // same token; everything else is an answer the member hears.
    if (error instanceof LaunchError && (error.reason !== 'other' || !transientAwsError(error)))
      throw new ProvisionFailed(launchMessage(error));
    throw error;
  }
  log.info({ instanceId: launched.id }, 'instance launched');
  trusted.add(launched.id);
  await job.updateData({ ...job.data, instanceId: launched.id });
  await bind(job, deps, await confirmOwner(job, deps, log, launched.id));
  return launched;
}

type Owned = Extract<OwnerCheck, { verdict: 'owned' }>;

/**
 * The one rule before any binding: EC2 describes the instance now, and it must carry this member's
 * user tag and the fleet's app and env tags, and not be terminated. An instance EC2 does not show
 * yet (its API is eventually consistent right after RunInstances) is asked about again.
 */
async function confirmOwner(
  job: ProvisionJob,
  deps: ProvisionDeps,
  log: Logger,
  instanceId: string,
): Promise<Owned> {
  const now = deps.now ?? Date.now;
  const deadline = now() + deps.settings.timeoutsMs.running;
  for (;;) {
    const check = await deps.fleet.checkOwner(instanceId, job.data.userId);
    if (check.verdict === 'owned') return check;
    if (check.verdict === 'foreign') throw refused(job, log, instanceId, check.problem);
    if (check.verdict === 'gone')
      throw new ProvisionFailed(
        `Your server ${instanceId} was terminated before it could be given access to your secrets.`,
        instanceId,
      );
    if (now() >= deadline)
      throw new ProvisionFailed(
        `Your server ${instanceId} did not show up in EC2 within ${formatWait(deps.settings.timeoutsMs.running)}, so it was not given access to your secrets.`,
        instanceId,
      );
    await sleepOf(deps)(deps.settings.pollMs);
  }
}

/** Logged for the audit of the fleet (no secret is involved), told to the member and the admins. */
function refused(job: ProvisionJob, log: Logger, instanceId: string, problem: string): ForeignInstance {
  log.error(
    { instanceId, problem, recorded: job.data.instanceId ?? null, security: 'binding-refused' },
    'refused to bind parameters: the instance is not this member’s',
  );
  const what = job.data.mode === 'start' ? 'Starting' : 'Setting up';
  return new ForeignInstance(
    `${what} your server was refused: instance ${instanceId} does not belong to you, so I did not give it access to your secrets and changed nothing.`,
    instanceId,
  );
}

/** The ABAC tag comes right after launch; the bootstrap retries AccessDenied until it lands. */
async function bind(job: ProvisionJob, deps: ProvisionDeps, owned: Owned): Promise<void> {
  const { instance } = owned;
  try {
    await deps.secrets.bindToInstance(job.data.userId, deps.settings.requiredSecrets, instance.arn);
  } catch (error) {
    // The stack's binder looked at the instance and said no (src/aws/secret-binder.ts): an answer,
    // not a wait, and the instance can never read the secrets, so it goes like any failed launch.
    if (error instanceof BindingRefusedError)
      throw new ProvisionFailed(
        `The secret binder refused to give your new server access to your secrets: ${error.reason}.`,
        instance.id,
      );
    throw error;
  }
  await job.updateData({ ...job.data, instanceId: instance.id, boundArn: instance.arn });
}

async function wait(
  deps: ProvisionDeps,
  instanceId: string,
  until: (h: InstanceHealth | undefined) => boolean,
  timeoutMs: number,
  what: string,
  fatal: (h: InstanceHealth | undefined) => string | undefined,
  onTrouble: TroubleListener,
): Promise<void> {
  let failure: string | undefined;
  try {
    await deps.poller.waitUntil(
      instanceId,
      (h) => {
        failure = fatal(h);
        return failure !== undefined || until(h);
      },
      timeoutMs,
      onTrouble,
    );
  } catch (error) {
    if (error instanceof StageTimeout) {
      const why = error.trouble ? `: ${describeTrouble(error.trouble.trouble, error.trouble.waitedMs)}` : '';
      throw new ProvisionFailed(
        `Your server did not reach ${what} within ${formatWait(timeoutMs)}${why}.`,
        instanceId,
      );
    }
    throw error;
  }
  if (failure) throw new ProvisionFailed(failure, instanceId);
}

/**
 * The bootstrap check document prints the sentinel when setup finished, or fails with the tail of
 * the bootstrap log; a first line `bootstrap: failed` means setup gave up and waiting is pointless.
 */
async function waitForBootstrap(
  job: ProvisionJob,
  deps: ProvisionDeps,
  instanceId: string,
  aws: AwsWait,
): Promise<void> {
  const { runCommand, settings } = deps;
  const now = deps.now ?? Date.now;
  const sleep = sleepOf(deps);
  const deadline = now() + settings.timeoutsMs.bootstrap;
  let reachedAgent = false;
  let lastOutput = '';
  let attempt = 0;
  while (now() < deadline) {
    attempt++;
    let sentAt: number | undefined;
    try {
      // A check only reads a file: sending it twice after an unclear failure does no harm.
      const commandId = await aws.run(
        () =>
          runCommand.send(
            [instanceId],
            settings.bootstrapCheckDocument,
            {},
            `${job.id}:bootstrap-check:${attempt}`,
          ),
        deadline,
      );
      sentAt = now();
      reachedAgent = true;
      for (let read = 0; ; read++) {
        await sleep(checkReadDelay(read, settings.pollMs));
        const invocation = await aws.run(() => runCommand.invocation(commandId, instanceId), deadline);
        if (!invocation || invocation.status === 'pending' || invocation.status === 'running') {
          if (now() >= deadline) break;
          continue;
        }
        if (invocation.status === 'success') return;
        if (invocation.status === 'undeliverable') reachedAgent = false;
        lastOutput = invocation.output;
        if (/^bootstrap: failed/m.test(invocation.output))
          throw new ProvisionFailed(
            `Setting up your assistant failed. Last lines of its log:\n${tail(lastOutput)}`,
            instanceId,
          );
        break;
      }
    } catch (error) {
      if (!(error instanceof AgentNotRegistered)) throw error;
    }
    // Reading sooner must not mean sending more: a check that found setup still going is sent again
    // two poll intervals after the last one, as when each read waited a full interval, so a long
    // bootstrap costs SSM no more SendCommands than it did.
    await sleep(
      sentAt === undefined
        ? settings.pollMs
        : Math.max(settings.pollMs, sentAt + 2 * settings.pollMs - now()),
    );
  }
  if (!reachedAgent)
    throw new ProvisionFailed(
      `Your server never connected to AWS Systems Manager within ${formatWait(settings.timeoutsMs.bootstrap)}, so its setup could not be checked.`,
      instanceId,
    );
  throw new ProvisionFailed(
    `Setting up your assistant did not finish within ${formatWait(settings.timeoutsMs.bootstrap)}.${
      lastOutput ? ` Last lines of its log:\n${tail(lastOutput)}` : ''
    }`,
    instanceId,
  );
}

function tail(output: string, lines = 10): string {
  return output.trim().split('\n').slice(-lines).join('\n').slice(-1500);
}

function launchMessage(error: LaunchError): string {
  switch (error.reason) {
    case 'no-capacity': {
      if (error.tried.length <= 1)
        return 'AWS has no capacity for this server type right now, so nothing was launched.';
      const types = [...new Set(error.tried.flatMap((p) => (p.instanceType ? [p.instanceType] : [])))];
      const subnets = new Set(error.tried.map((p) => p.subnetId)).size;
      const what =
        types.length === 0
          ? 'this server type'
          : types.length === 1
            ? types[0]
            : `${types.slice(0, -1).join(', ')} or ${types.at(-1)}`;
      const where = subnets > 1 ? ` in any of the ${subnets} configured subnets` : '';
      return `AWS has no capacity for ${what}${where} right now, so nothing was launched.`;
    }
    case 'bad-image':
      return 'The server image is not available, so nothing was launched.';
    case 'limit':
      return 'The fleet has reached its AWS instance limit, so nothing was launched.';
    case 'profile-not-ready':
      return `AWS did not accept the server's access role (instance profile) within ${formatWait(error.waitedMs)} (${error.awsCode}), so nothing was launched.`;
    case 'token-mismatch':
      return `AWS refused the launch: its request token was already used with other settings (${error.awsCode}), so no second server was launched.`;
    default:
      return `AWS refused to launch the server (${error.awsCode}), so nothing was launched.`;
  }
}

async function alertAdmins(deps: ProvisionDeps, message: OutgoingMessage): Promise<void> {
  const channel = deps.settings.alertChannelId;
  const slack = deps.outboxes.slack;
  if (!channel || !slack) return;
  await slack
    .send({ platform: 'slack', chatId: channel }, message)
    .catch((err: unknown) => deps.log.warn({ err: String(err) }, 'admin alert failed'));
}
