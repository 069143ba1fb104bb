import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  paginateDescribeInstanceInformation,
  paginateDescribeInstancePatchStates,
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
    async sendBatch(command) {
      try {
        const res = await ssm.send(
          new SendCommandCommand({
            InstanceIds: [...command.instanceIds],
            DocumentName: command.document,
            Parameters: command.parameters,
            Comment: command.comment.slice(0, 100),
            // Our own fleet-wide limits decide; SSM's per-command ones must not stop a batch early.
            MaxConcurrency: String(command.instanceIds.length),
            MaxErrors: String(command.instanceIds.length),
            ...(command.timeoutSeconds ? { TimeoutSeconds: command.timeoutSeconds } : {}),
          }),
        );
        return res.Command?.CommandId ?? '';
      } catch (error) {
        if (error instanceof Error && error.name === 'InvalidInstanceId')
          throw new InstancesRejected(error.message);
        throw error;
      }
    },
    async listInvocations(commandId, withOutput = false) {
      const out: InvocationSummary[] = [];
      let NextToken: string | undefined;
      do {
        const res = await ssm.send(
          new ListCommandInvocationsCommand({
            CommandId: commandId,
            MaxResults: 50,
            Details: withOutput,
            NextToken,
          }),
        );
        for (const inv of res.CommandInvocations ?? []) {
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
        NextToken = res.NextToken;
      } while (NextToken);
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
      let NextToken: string | undefined;
      do {
        const res = await ssm.send(
          new ListCommandsCommand({
            Filters: [{ key: 'InvokedAfter', value: after.toISOString() }],
            MaxResults: 50,
            NextToken,
          }),
        );
        const found = (res.Commands ?? []).find((c) => c.Comment === comment.slice(0, 100));
        if (found?.CommandId) return found.CommandId;
        NextToken = res.NextToken;
      } while (NextToken);
      return undefined;
    },
    async send(instanceIds, document, parameters, comment) {
      try {
        const res = await ssm.send(
          new SendCommandCommand({
            InstanceIds: [...instanceIds],
            DocumentName: document,
            Parameters: parameters,
            Comment: comment.slice(0, 100),
          }),
        );
        return res.Command?.CommandId ?? '';
      } catch (error) {
        if (error instanceof Error && error.name === 'InvalidInstanceId' && instanceIds.length === 1)
          throw new AgentNotRegistered(instanceIds[0] ?? '');
        throw error;
      }
    },
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
