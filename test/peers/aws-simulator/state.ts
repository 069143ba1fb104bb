import type { FunctionRecord } from './lambda.js';

/**
 * What the simulator remembers, per account (the `x-moto-account-id` header), so that test files
 * running in parallel against one simulator never see each other's commands, scripts or faults.
 */

/**
 * How one invocation ends. It stays Pending for `pendingMs`, InProgress until `afterMs` (both
 * measured from when the agent picked the command up: SendCommand on the simulator clock, or, for a
 * command Delayed on a stopped instance, the moment that instance runs again), then reaches
 * `status`. `InProgress` as the status means it never finishes by itself, which is what a cancel or
 * a poll-timeout test needs.
 */
export interface RunCommandOutcome {
  status: 'Success' | 'Failed' | 'TimedOut' | 'InProgress';
  /** Standard output; GetCommandInvocation shows the first 24,000 chars, ListCommandInvocations 2,500. */
  output?: string;
  /** Standard error; GetCommandInvocation shows the first 8,000 chars. */
  errorOutput?: string;
  /** Defaults: 0 for Success, 1 for Failed, -1 for TimedOut. */
  responseCode?: number;
  afterMs?: number;
  pendingMs?: number;
  /**
   * What a successful AWS-RunPatchBaseline run reports to Patch Manager, read back through
   * DescribeInstancePatchStates (see patch-states.ts); every count defaults to 0.
   */
  patchState?: PatchCounts;
}

export interface PatchCounts {
  installed?: number;
  installedOther?: number;
  installedPendingReboot?: number;
  installedRejected?: number;
  missing?: number;
  failed?: number;
  notApplicable?: number;
}

/** A fixed outcome, or one computed from what was sent, so a test can see a document parameter arrive. */
export type RunCommandScript =
  | RunCommandOutcome
  | ((documentName: string, parameters: Record<string, string[]>, instanceId: string) => RunCommandOutcome);

export interface BootTiming {
  pendingMs: number;
  initializingMs: number;
  /**
   * The status check that fails once initializing is over (the other passes), for a hardware or
   * guest OS failure that moto can never report; both pass when omitted.
   */
  impaired?: 'system' | 'instance';
  /**
   * How long SSM keeps not knowing a new instance once its first boot has reached `running` (the
   * agent registers itself after the OS is up); 0 unless set. A restarted instance is registered already.
   */
  agentRegistrationMs?: number;
}

export interface BootRecord extends BootTiming {
  startedAt: number;
  /** Only the first boot hides an instance from SSM; a restarted one is already registered. */
  firstBoot: boolean;
}

export interface RegisteredInstance {
  platformType?: 'Linux' | 'Windows' | 'MacOS';
  platformName?: string;
  platformVersion?: string;
  ipAddress?: string;
  computerName?: string;
  resourceType?: 'EC2Instance' | 'ManagedInstance';
  /**
   * The node's tags, for SendCommand `Targets` with `tag:<key>` and DescribeInstanceInformation's
   * tag filters; an instance moto (or the fleet index) knows keeps the tags it has there.
   */
  tags?: Record<string, string>;
}

export interface AgentState {
  online: boolean;
  since: number;
}

export interface InvocationRecord {
  instanceId: string;
  /** Fixed at send time: scripts apply to commands sent after they were set. */
  outcome: RunCommandOutcome;
  /** The document's steps for this instance, in order; exactly one of them runs the script. */
  steps: StepRecord[];
  /**
   * Accepted for an instance that was not running (stopped, stopping, pending): Delayed until the
   * agent picks it up at `pickedUpAt`, known once the instance runs again (see delayed-delivery.ts).
   */
  delayed?: boolean;
  pickedUpAt?: number;
  /** When CancelCommand reached a delivered invocation; it shows Cancelling until `cancelledAt`. */
  cancelRequestedAt?: number;
  cancelledAt?: number;
  /**
   * When the agent went offline before the invocation finished: from then on it can never report,
   * so the invocation shows what it showed then until the command expires (see command-status.ts).
   */
  agentLostAt?: number;
  /** When the instance was terminated under the still unfinished invocation. */
  instanceGoneAt?: number;
  /** When SSM has noticed that termination and ends the invocation Undeliverable. */
  undeliverableAt?: number;
}

/** One step (plugin) of a document; `skippedFor` names the platform a skipped step's precondition wants. */
export interface StepRecord {
  name: string;
  skippedFor?: string;
}

export interface CommandRecord {
  commandId: string;
  region: string;
  documentName: string;
  documentVersion: string;
  comment: string;
  parameters: Record<string, string[]>;
  /** Every target, in target order (the order rate control sends in), however the request named them. */
  instanceIds: string[];
  /** The request's `Targets` as sent, when it named its instances that way (and not by `InstanceIds`). */
  targets?: SendCommandTarget[];
  maxConcurrency: string;
  maxErrors: string;
  timeoutSeconds: number;
  requestedAt: number;
  /** The rest of the request (S3, SNS, CloudWatch settings), echoed back like AWS does. */
  echo: Record<string, unknown>;
  cancelRequested: boolean;
  invocations: InvocationRecord[];
}

export interface SendCommandTarget {
  Key: string;
  Values: string[];
}

/** EC2 instance states with their codes, as DescribeInstances reports them. */
export const INSTANCE_STATE_CODES = {
  pending: 0,
  running: 16,
  'shutting-down': 32,
  terminated: 48,
  stopping: 64,
  stopped: 80,
} as const;

export type InstanceStateName = keyof typeof INSTANCE_STATE_CODES;

/** One instance of a fleet indexed with `indexFleet` (see ec2-index.ts). */
export interface IndexedInstance {
  instanceId: string;
  state: InstanceStateName;
  tags: Record<string, string>;
  launchTime: number;
  instanceType: string;
  privateIpAddress: string;
}

/** An account's EC2 instances as the simulator itself keeps them, so reads need no moto round trip. */
export interface FleetIndex {
  /** By instance id, in the order they were first indexed: the order EC2 reads list them in. */
  instances: Map<string, IndexedInstance>;
  /** How many calls the index answered (moto saw none of them), by operation. */
  served: { DescribeInstances: number; DescribeInstanceStatus: number };
}

export interface AccountState {
  /** In send order; listings show the newest first. */
  commands: CommandRecord[];
  scripts: Map<string, RunCommandScript>;
  agents: Map<string, AgentState>;
  registered: Map<string, RegisteredInstance>;
  bootTiming: BootTiming | undefined;
  boots: Map<string, BootRecord>;
  /** How long SSM takes to notice that an instance under an unfinished invocation was terminated. */
  terminationNoticeMs: number;
  /** Instances whose agent never registered with SSM (`setAgentRegistered(..., false)`). */
  unregistered: Set<string>;
  /** How long a cancel takes to reach a delivered invocation; 0 cancels at once. */
  cancelDelayMs: number;
  visibilityLag: VisibilityLag;
  /** When RunInstances launched each instance, for DescribeInstanceStatus's visibility lag. */
  launchedAt: Map<string, number>;
  /** Lambda functions deployed with `deployFunction`, by name. */
  functions: Map<string, FunctionRecord>;
  /** Set by `indexFleet`: from then on the account's EC2 reads are answered from it. */
  fleetIndex: FleetIndex | undefined;
}

/** Eventual consistency: how long fresh results stay invisible to the listed reads; 0 unless set. */
export interface VisibilityLag {
  /** ListCommands does not show a command for this long after its SendCommand. */
  listCommandsMs: number;
  /** DescribeInstanceStatus does not know an instance for this long after RunInstances. */
  instanceStatusMs: number;
}

export interface SimulatorState {
  account(accountId: string): AccountState;
  reset(accountId?: string): void;
}

export function createState(): SimulatorState {
  const accounts = new Map<string, AccountState>();
  return {
    account(accountId) {
      let state = accounts.get(accountId);
      if (!state) {
        state = {
          commands: [],
          scripts: new Map(),
          agents: new Map(),
          registered: new Map(),
          bootTiming: undefined,
          boots: new Map(),
          terminationNoticeMs: 0,
          unregistered: new Set(),
          cancelDelayMs: 0,
          visibilityLag: { listCommandsMs: 0, instanceStatusMs: 0 },
          launchedAt: new Map(),
          functions: new Map(),
          fleetIndex: undefined,
        };
        accounts.set(accountId, state);
      }
      return state;
    },
    reset(accountId) {
      if (accountId) accounts.delete(accountId);
      else accounts.clear();
    },
  };
}

export type BootPhase = 'pending' | 'initializing' | 'ready';

export function bootPhase(record: BootRecord | undefined, now: number): BootPhase {
  if (!record) return 'ready';
  if (now < record.startedAt + record.pendingMs) return 'pending';
  if (now < record.startedAt + record.pendingMs + record.initializingMs) return 'initializing';
  return 'ready';
}
