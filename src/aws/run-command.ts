import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  paginateDescribeInstanceInformation,
  paginateDescribeInstancePatchStates,
  paginateListCommandInvocations,
  paginateListCommands,
  SendCommandCommand,
  type SSMClient,
} from '@aws-sdk/client-ssm';

/** SSM Run Command in domain terms; no SDK type leaves this file. */

export type InvocationStatus =
  | 'pending'
  /** SSM tried to deliver it and could not (a stopped instance); it keeps trying until the command expires. */
  | 'delayed'
  | 'running'
  | 'success'
  | 'failed'
  | 'timed-out'
  | 'cancelled'
  | 'undeliverable';

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

export function createRunCommand(ssm: SSMClient): RunCommand {
  async function agents(instanceIds: readonly string[]): Promise<Map<string, AgentPing>> {
    const pings = new Map<string, AgentPing>();
    for (let i = 0; i < instanceIds.length; i += 50) {
      const pages = paginateDescribeInstanceInformation(
        { client: ssm, pageSize: 50 },
        { Filters: [{ Key: 'InstanceIds', Values: instanceIds.slice(i, i + 50) }] },
      );
      for await (const page of pages)
        for (const info of page.InstanceInformationList ?? [])
          if (info.InstanceId) pings.set(info.InstanceId, (info.PingStatus as AgentPing) ?? 'Inactive');
    }
    return pings;
  }

  return {
    sendBatch: (command) => sendCommand(ssm, command, batchSend),
    async listInvocations(commandId, withOutput = false) {
      const out: InvocationSummary[] = [];
      const pages = paginateListCommandInvocations(
        { client: ssm, pageSize: 50 },
        { CommandId: commandId, Details: withOutput },
      );
      for await (const page of pages)
        for (const inv of page.CommandInvocations ?? []) {
          if (!inv.InstanceId) continue;
          const output = withOutput
            ? (inv.CommandPlugins ?? []).map((p) => p.Output ?? '').join('\n')
            : undefined;
          out.push({
            instanceId: inv.InstanceId,
            status: statusOf(inv.Status, inv.StatusDetails),
            details: inv.StatusDetails,
            output,
          });
        }
      return out;
    },
    async cancel(commandId, instanceIds) {
      await ssm.send(
        new CancelCommandCommand({
          CommandId: commandId,
          ...(instanceIds ? { InstanceIds: [...instanceIds] } : {}),
        }),
      );
    },
    async findByComment(comment, after) {
      const sent = comment.slice(0, 100);
      const pages = paginateListCommands(
        { client: ssm, pageSize: 50 },
        { Filters: [{ key: 'InvokedAfter', value: after.toISOString() }] },
      );
      // Leaving the loop at the first match leaves the later pages unasked.
      for await (const page of pages) {
        const found = (page.Commands ?? []).find((c) => c.Comment === sent);
        if (found?.CommandId) return found.CommandId;
      }
      return undefined;
    },
    send: (instanceIds, document, parameters, comment) =>
      sendCommand(ssm, { instanceIds, document, parameters, comment }, singleSend),
    async invocation(commandId, instanceId, plugin) {
      try {
        const res = await ssm.send(
          new GetCommandInvocationCommand({
            CommandId: commandId,
            InstanceId: instanceId,
            ...(plugin ? { PluginName: plugin } : {}),
          }),
        );
        const output = [res.StandardOutputContent, res.StandardErrorContent].filter(Boolean).join('\n');
        return { status: statusOf(res.Status, res.StatusDetails), output };
      } catch (error) {
        // Right after SendCommand the invocation may not exist yet.
        if (error instanceof Error && error.name === 'InvocationDoesNotExist') return undefined;
        throw error;
      }
    },
    async agentsOnline(instanceIds) {
      const pings = await agents(instanceIds);
      return new Map(instanceIds.map((id) => [id, pings.get(id) === 'Online']));
    },
    agents,
    async patchStates(instanceIds) {
      const states = new Map<string, PatchState>();
      // InstanceIds takes at most 50 ids (DescribeInstancePatchStates API reference).
      for (let i = 0; i < instanceIds.length; i += 50) {
        const pages = paginateDescribeInstancePatchStates(
          { client: ssm, pageSize: 50 },
          { InstanceIds: instanceIds.slice(i, i + 50) },
        );
        for await (const page of pages)
          for (const p of page.InstancePatchStates ?? [])
            if (p.InstanceId)
              states.set(p.InstanceId, {
                missing: p.MissingCount ?? 0,
                failed: p.FailedCount ?? 0,
                installedPendingReboot: p.InstalledPendingRebootCount ?? 0,
                operation: p.Operation === 'Install' ? 'Install' : 'Scan',
                endedAt: p.OperationEndTime ?? new Date(0),
              });
      }
      return states;
    },
  };
}

/** How the two kinds of send differ: SSM's own limits, and what SSM's refusal of an instance id means. */
interface SendMode {
  /**
   * MaxConcurrency and MaxErrors set to the whole batch: our own fleet-wide limits decide, and SSM's
   * per-command ones must not stop a batch early.
   */
  wholeBatch: boolean;
  /** What SSM's InvalidInstanceId becomes; undefined lets SSM's error through as it came. */
  rejected(message: string, instanceIds: readonly string[]): Error | undefined;
}

/** A rollout's batch: any id SSM cannot reach refuses the whole batch, and the rollout sorts it out. */
const batchSend: SendMode = {
  wholeBatch: true,
  rejected: (message) => new InstancesRejected(message),
};

/** A command to one member's instance, where a refused id means its agent has not registered yet. */
const singleSend: SendMode = {
  wholeBatch: false,
  rejected: (_message, instanceIds) =>
    instanceIds.length === 1 ? new AgentNotRegistered(instanceIds[0] ?? '') : undefined,
};

async function sendCommand(ssm: SSMClient, command: BatchCommand, mode: SendMode): Promise<string> {
  const { instanceIds } = command;
  try {
    const res = await ssm.send(
      new SendCommandCommand({
        InstanceIds: [...instanceIds],
        DocumentName: command.document,
        Parameters: command.parameters,
        Comment: command.comment.slice(0, 100),
        ...(mode.wholeBatch
          ? { MaxConcurrency: String(instanceIds.length), MaxErrors: String(instanceIds.length) }
          : {}),
        ...(command.timeoutSeconds ? { TimeoutSeconds: command.timeoutSeconds } : {}),
      }),
    );
    return res.Command?.CommandId ?? '';
  } catch (error) {
    const rejected =
      error instanceof Error && error.name === 'InvalidInstanceId'
        ? mode.rejected(error.message, instanceIds)
        : undefined;
    throw rejected ?? error;
  }
}

function statusOf(status: string | undefined, details: string | undefined): InvocationStatus {
  if (details === 'Undeliverable') return 'undeliverable';
  switch (status) {
    case 'Success':
      return 'success';
    case 'Failed':
      return 'failed';
    case 'TimedOut':
      return 'timed-out';
    case 'Cancelled':
      return 'cancelled';
    // A cancel asked for is not a cancel done: the invocation may still end in Success.
    case 'Cancelling':
    case 'InProgress':
      return 'running';
    case 'Delayed':
      return 'delayed';
    default:
      return 'pending';
  }
}
