/** SSM Run Command in domain terms. src/aws/run-command.ts implements it; no SDK type crosses this line. */

export const invocationStatuses = [
  'pending',
  /** SSM tried to deliver it and could not (a stopped instance); it keeps trying until the command expires. */
  'delayed',
  'running',
  'success',
  'failed',
  'timed-out',
  'cancelled',
  'undeliverable',
] as const;

export type InvocationStatus = (typeof invocationStatuses)[number];

export interface Invocation {
  status: InvocationStatus;
  /** Standard output then standard error, as SSM returns them (truncated by SSM at 24,000 chars). */
  output: string;
}

/** SSM does not know the instance yet: its agent has not registered. */
export class AgentNotRegistered extends Error {
  constructor(readonly instanceId: string) {
    super(`the SSM agent on ${instanceId} has not registered`);
    this.name = 'AgentNotRegistered';
  }
}

/**
 * SSM refused a whole batch because one of its ids is not a managed node it can reach (terminated,
 * its agent offline or never registered): nothing was sent to any of them. `instanceIds` are the
 * ids SSM named, when its message names them (`Instances [[i-a, i-b]] not in a valid state…`).
 */
export class InstancesRejected extends Error {
  readonly awsCode = 'InvalidInstanceId';
  readonly instanceIds: string[];
  constructor(message: string) {
    super(message);
    this.name = 'InstancesRejected';
    this.instanceIds = /\[\[([^\]]*)\]\]/.exec(message)?.[1]?.match(/\b(?:m?i)-[0-9a-f]{8,17}\b/g) ?? [];
  }
}

/** What SSM knows of an instance's agent; an instance it does not know is left out of the answer. */
export type AgentPing = 'Online' | 'ConnectionLost' | 'Inactive';

/** An instance's patch state as of its last RunPatchBaseline operation (scan or install). */
export interface PatchState {
  missing: number;
  failed: number;
  installedPendingReboot: number;
  operation: 'Scan' | 'Install';
  /** When that operation ended: a state older than a rollout did not come from it. */
  endedAt: Date;
}

export interface BatchCommand {
  instanceIds: readonly string[];
  document: string;
  parameters: Record<string, string[]>;
  /** `<jobId>:<batch>`: how a restarted job finds a send it did not get to record. */
  comment: string;
  timeoutSeconds?: number;
}

export interface InvocationSummary {
  instanceId: string;
  status: InvocationStatus;
  /** SSM's StatusDetails, which tells a delivery timeout (`DeliveryTimedOut`) from a script's. */
  details?: string;
  /** Plugin output when asked for (SSM truncates it to 2,500 characters here). */
  output?: string;
}

export interface RunCommand {
  /** Throws InstancesRejected when SSM refuses the batch over an id it cannot reach. */
  sendBatch(command: BatchCommand): Promise<string>;
  /** Every invocation of one command: one call per 50 instances, never one per instance. */
  listInvocations(commandId: string, withOutput?: boolean): Promise<InvocationSummary[]>;
  /** The whole command, or only these instances' invocations of it. */
  cancel(commandId: string, instanceIds?: readonly string[]): Promise<void>;
  /** The command sent with exactly this comment since `after`, if any. */
  findByComment(comment: string, after: Date): Promise<string | undefined>;
  send(
    instanceIds: readonly string[],
    document: string,
    parameters: Record<string, string[]>,
    comment: string,
  ): Promise<string>;
  /**
   * One instance's output. A document with several steps needs the step (`plugin`) named: SSM
   * refuses the call without it (PluginName, GetCommandInvocation API reference).
   */
  invocation(commandId: string, instanceId: string, plugin?: string): Promise<Invocation | undefined>;
  /** Which of these instances have an agent answering SSM right now. */
  agentsOnline(instanceIds: readonly string[]): Promise<Map<string, boolean>>;
  /** The agent of each instance SSM knows; one call per 50 ids. */
  agents(instanceIds: readonly string[]): Promise<Map<string, AgentPing>>;
  /** Patch states as SSM keeps them (DescribeInstancePatchStates), one call per 50 ids; unpatched ones are absent. */
  patchStates(instanceIds: readonly string[]): Promise<Map<string, PatchState>>;
}
