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
import {
  AgentNotRegistered,
  type AgentPing,
  type BatchCommand,
  InstancesRejected,
  type Invocation,
  type InvocationStatus,
  type InvocationSummary,
  type PatchState,
  type RunCommand,
} from '../core/ports/run-command.js';

export type {
  AgentPing,
  BatchCommand,
  Invocation,
  InvocationStatus,
  InvocationSummary,
  PatchState,
  RunCommand,
};

/** SSM Run Command in domain terms; no SDK type leaves this file. */

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

export function statusOf(status: string | undefined, details: string | undefined): InvocationStatus {
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
