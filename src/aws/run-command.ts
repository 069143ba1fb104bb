import {
  CancelCommandCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  ListCommandsCommand,
  SendCommandCommand,
  type SSMClient,
} from '@aws-sdk/client-ssm';

/** SSM Run Command in domain terms; no SDK type leaves this file. */

export type InvocationStatus =
  | 'pending'
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
 * or its agent never registered): nothing was sent to any of them.
 */
export class InstancesRejected extends Error {
  readonly awsCode = 'InvalidInstanceId';
  constructor(message: string) {
    super(message);
    this.name = 'InstancesRejected';
  }
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
  cancel(commandId: string): Promise<void>;
  /** The command sent with exactly this comment since `after`, if any. */
  findByComment(comment: string, after: Date): Promise<string | undefined>;
  send(
    instanceIds: readonly string[],
    document: string,
    parameters: Record<string, string[]>,
    comment: string,
  ): Promise<string>;
  invocation(commandId: string, instanceId: string): Promise<Invocation | undefined>;
  /** Which of these instances have an agent answering SSM right now. */
  agentsOnline(instanceIds: readonly string[]): Promise<Map<string, boolean>>;
}

export function createRunCommand(ssm: SSMClient): RunCommand {
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
    async cancel(commandId) {
      await ssm.send(new CancelCommandCommand({ CommandId: commandId }));
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
    async invocation(commandId, instanceId) {
      try {
        const res = await ssm.send(
          new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId }),
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
      const online = new Map<string, boolean>(instanceIds.map((id) => [id, false]));
      for (let i = 0; i < instanceIds.length; i += 50) {
        let NextToken: string | undefined;
        do {
          const res = await ssm.send(
            new DescribeInstanceInformationCommand({
              Filters: [{ Key: 'InstanceIds', Values: instanceIds.slice(i, i + 50) }],
              MaxResults: 50,
              NextToken,
            }),
          );
          for (const info of res.InstanceInformationList ?? [])
            if (info.InstanceId) online.set(info.InstanceId, info.PingStatus === 'Online');
          NextToken = res.NextToken;
        } while (NextToken);
      }
      return online;
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
    case 'Cancelling':
      return 'cancelled';
    case 'InProgress':
      return 'running';
    default:
      return 'pending';
  }
}
