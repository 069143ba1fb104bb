/**
 * SSM Run Command, owned entirely by the simulator: moto's version always succeeds at once with
 * empty output, has no limits, fans out to every instance, and lacks ListCommandInvocations and
 * CancelCommand. Statuses come from `command-status.ts` and the injected clock, so tests move time
 * forward instead of sleeping.
 */
import { randomUUID } from 'node:crypto';
import { cloudWatchConfig, commandJson, invocationJson } from './command-json.js';
import { commandView, type InvocationView, invocationView, invocationViews } from './command-status.js';
import { stepsFor } from './documents.js';
import type { CommandEventsHook } from './events.js';
import { type ManagedInstance, managedInstances, rejectedIds } from './instance-information.js';
import { page } from './pagination.js';
import { namedInstanceIds, targetInstanceIds, validateSendCommand } from './send-command-input.js';
import type {
  AccountState,
  CommandRecord,
  InvocationRecord,
  RunCommandOutcome,
  RunCommandScript,
  SimulatorState,
} from './state.js';
import { type StepView, stepViews } from './steps.js';
import type { Upstream } from './upstream.js';
import { listedCommand } from './visibility-lag.js';
import { type AwsCall, AwsError, validationError } from './wire.js';

type Handler = (call: AwsCall) => Promise<unknown>;

const DEFAULT_OUTCOME: RunCommandOutcome = { status: 'Success', output: '', afterMs: 0 };
const GET_STDOUT_LIMIT = 24_000;
const GET_STDERR_LIMIT = 8_000;

export function createRunCommandHandlers(deps: {
  state: SimulatorState;
  upstream: Upstream;
  clock: () => number;
  events?: CommandEventsHook;
}): Record<string, Handler> {
  const { state, clock } = deps;

  return {
    async SendCommand(call) {
      const input = call.json;
      const request = validateSendCommand(input);
      const account = state.account(call.accountId);
      // Targets match by tag across the account; InstanceIds alone need only the named nodes.
      const nodes = await managedInstances(
        deps,
        call.accountId,
        call.region,
        request.targets ? undefined : request.instanceIds,
      );
      const managed = new Map(nodes.map((m) => [m.instanceId, m]));
      // One unreachable id fails the whole call; the message is AWS's, bad ids in request order.
      const rejected = rejectedIds(namedInstanceIds(request), managed);
      if (rejected.length > 0) {
        throw new AwsError(
          'InvalidInstanceId',
          `Instances [[${rejected.join(', ')}]] not in a valid state for account ${call.accountId}`,
        );
      }
      const requestedAt = clock();
      // Tags may also match nodes whose agent is offline: those wait Delayed (see unreachable).
      const instanceIds = targetInstanceIds(request, nodes);
      const command: CommandRecord = {
        commandId: randomUUID(),
        region: call.region,
        documentName: request.documentName,
        documentVersion: typeof input.DocumentVersion === 'string' ? input.DocumentVersion : '$DEFAULT',
        comment: request.comment,
        parameters: request.parameters,
        instanceIds,
        ...(request.targets ? { targets: request.targets } : {}),
        maxConcurrency: request.maxConcurrency,
        maxErrors: request.maxErrors,
        timeoutSeconds: request.timeoutSeconds,
        requestedAt,
        echo: input,
        cancelRequested: false,
        invocations: instanceIds.map((instanceId) => {
          // Accepted ids are all known: rejectedIds left no other, and tags match managed nodes only.
          const node = managed.get(instanceId) as ManagedInstance;
          return {
            instanceId,
            outcome: resolveScript(account, instanceId, request.documentName, request.parameters),
            steps: stepsFor(request.documentName, node.platformType),
            ...(node.delivery === 'delay' ? delayed(account, node, requestedAt) : {}),
            ...(node.delivery === 'reject' ? unreachable(requestedAt) : {}),
          };
        }),
      };
      account.commands.push(command);
      deps.events?.commandSent(call.accountId, command);
      return { Command: commandJson(command, clock()) };
    },

    async ListCommands(call) {
      const input = call.json;
      const now = clock();
      const filters = readCommandFilters(input.Filters);
      const commandId = optionalCommandId(input.CommandId);
      const instanceId = optionalString(input.InstanceId);
      const account = state.account(call.accountId);
      // Right after SendCommand the command is not listed yet, not even by its id (visibility-lag.ts).
      const listed = newestFirst(account).filter((c) => listedCommand(account, c, now));
      if (commandId && !listed.some((c) => c.commandId === commandId)) {
        throw new AwsError('InvalidCommandId', 'Invalid command id.');
      }
      const matching = listed
        .filter((c) => !commandId || c.commandId === commandId)
        .filter((c) => !instanceId || c.instanceIds.includes(instanceId))
        .map((c) => ({ command: c, view: commandView(c, now) }))
        .filter(({ command, view }) =>
          filters.every((f) => commandFilterMatches(f, command, view.status, view.terminal)),
        );
      const { items, nextToken } = page(
        matching,
        input,
        { min: 1, max: 50, fallback: 50 },
        `ListCommands:${commandId}:${instanceId}:${JSON.stringify(filters)}`,
      );
      return {
        Commands: items.map(({ command }) => commandJson(command, now)),
        ...(nextToken ? { NextToken: nextToken } : {}),
      };
    },

    async ListCommandInvocations(call) {
      const input = call.json;
      const now = clock();
      const filters = readCommandFilters(input.Filters);
      const commandId = optionalCommandId(input.CommandId);
      const instanceId = optionalString(input.InstanceId);
      const details = input.Details === true;
      const account = state.account(call.accountId);
      if (commandId && !account.commands.some((c) => c.commandId === commandId)) {
        throw new AwsError('InvalidCommandId', 'Invalid command id.');
      }
      const matching = newestFirst(account)
        .filter((c) => !commandId || c.commandId === commandId)
        .flatMap((command) => {
          // One schedule read per command, not one per invocation (see command-status.ts).
          const views = invocationViews(command, now);
          return command.invocations
            .map((invocation, i) => ({ command, invocation, view: views[i] as InvocationView }))
            .filter(({ invocation }) => !instanceId || invocation.instanceId === instanceId);
        })
        .filter(({ command, view }) =>
          filters.every((f) => commandFilterMatches(f, command, view.status, view.terminal)),
        );
      const { items, nextToken } = page(
        matching,
        input,
        { min: 1, max: 50, fallback: 50 },
        `ListCommandInvocations:${commandId}:${instanceId}:${JSON.stringify(filters)}`,
      );
      return {
        CommandInvocations: items.map(({ command, invocation, view }) =>
          invocationJson(command, invocation, view, details),
        ),
        ...(nextToken ? { NextToken: nextToken } : {}),
      };
    },

    async GetCommandInvocation(call) {
      const input = call.json;
      const commandId = requiredString(input.CommandId, 'commandId');
      const instanceId = requiredString(input.InstanceId, 'instanceId');
      const command = state.account(call.accountId).commands.find((c) => c.commandId === commandId);
      const invocation = command?.invocations.find((inv) => inv.instanceId === instanceId);
      if (!command || !invocation) {
        throw new AwsError('InvocationDoesNotExist', 'An error occurred (InvocationDoesNotExist).');
      }
      const view = invocationView(command, invocation, clock());
      const step = chosenStep(stepViews(invocation, view), optionalString(input.PluginName));
      const end = step.endedAt ?? (step.startedAt === undefined ? undefined : clock());
      return {
        CommandId: command.commandId,
        InstanceId: instanceId,
        Comment: command.comment,
        DocumentName: command.documentName,
        DocumentVersion: command.documentVersion,
        PluginName: step.name,
        ResponseCode: step.responseCode,
        ExecutionStartDateTime: step.startedAt === undefined ? '' : new Date(step.startedAt).toISOString(),
        ExecutionElapsedTime:
          step.startedAt === undefined || end === undefined ? '' : isoDuration(end - step.startedAt),
        ExecutionEndDateTime: step.endedAt === undefined ? '' : new Date(step.endedAt).toISOString(),
        Status: step.status,
        StatusDetails: step.statusDetails,
        StandardOutputContent: step.stdout.slice(0, GET_STDOUT_LIMIT),
        StandardOutputUrl: '',
        StandardErrorContent: step.stderr.slice(0, GET_STDERR_LIMIT),
        StandardErrorUrl: '',
        CloudWatchOutputConfig: cloudWatchConfig(command),
      };
    },

    async CancelCommand(call) {
      const input = call.json;
      const commandId = requiredString(input.CommandId, 'commandId');
      const command = state.account(call.accountId).commands.find((c) => c.commandId === commandId);
      if (!command) throw new AwsError('InvalidCommandId', 'Invalid command id.');
      const only = Array.isArray(input.InstanceIds) ? input.InstanceIds.map(String) : undefined;
      const unknown = (only ?? []).filter((id) => !command.instanceIds.includes(id));
      if (unknown.length > 0) {
        throw new AwsError(
          'InvalidInstanceId',
          `Instances [[${unknown.join(', ')}]] are not part of this command`,
        );
      }
      const now = clock();
      const account = state.account(call.accountId);
      // Every status as the cancel finds it, read before any cancel changes what rate control sends.
      const views = invocationViews(command, now);
      command.invocations.forEach((invocation, i) => {
        if (only && !only.includes(invocation.instanceId)) return;
        if (invocation.cancelledAt !== undefined) return;
        const view = views[i] as InvocationView;
        if (view.terminal) return;
        // Only a delivered invocation has an agent to tell; one still Pending or Delayed ends at once.
        if (view.status === 'InProgress') {
          invocation.cancelRequestedAt = now;
          invocation.cancelledAt = now + account.cancelDelayMs;
        } else invocation.cancelledAt = now;
      });
      if (!only) command.cancelRequested = true;
      deps.events?.commandChanged(call.accountId, command);
      return {};
    },
  };
}

function resolveScript(
  account: AccountState,
  instanceId: string,
  documentName: string,
  parameters: Record<string, string[]>,
): RunCommandOutcome {
  const script: RunCommandScript =
    account.scripts.get(instanceId) ?? account.scripts.get('*') ?? DEFAULT_OUTCOME;
  // A copy, so a test editing its script object later cannot rewrite history.
  return typeof script === 'function'
    ? { ...script(documentName, structuredClone(parameters), instanceId) }
    : { ...script };
}

/**
 * An invocation for a node that is not running waits Delayed. Its agent picks it up when the node
 * runs again (known already for a restart under way); an agent marked offline leaves it waiting
 * until the agent is back.
 */
function delayed(account: AccountState, node: ManagedInstance, now: number): Partial<InvocationRecord> {
  const agentOffline = account.agents.get(node.instanceId)?.online === false;
  return {
    delayed: true,
    ...(node.runningFrom === undefined ? {} : { pickedUpAt: node.runningFrom }),
    ...(agentOffline ? { agentLostAt: now } : {}),
  };
}

/**
 * A node a tag matched whose agent is offline: SSM tries to send and keeps retrying ("Delayed: The
 * system attempted to send the command to the managed node but wasn't successful. The system
 * retries again.", StatusDetails of CommandInvocation,
 * https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandInvocation.html), so
 * it waits Delayed until its agent is back (agentBack) or the command expires.
 */
function unreachable(now: number): Partial<InvocationRecord> {
  return { delayed: true, pickedUpAt: now, agentLostAt: now };
}

/**
 * GetCommandInvocation's PluginName: "If the document contains only one step, you can omit the name
 * and details for that step. If the document contains more than one step, you must specify the name
 * of the step for which you want to view details."
 * (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_GetCommandInvocation.html);
 * InvalidPluginName ("The plugin name isn't valid.") is the operation's error for a step name it
 * cannot use.
 */
function chosenStep(steps: StepView[], pluginName: string | undefined): StepView {
  const step =
    pluginName === undefined
      ? steps.length === 1
        ? steps[0]
        : undefined
      : steps.find((s) => s.name === pluginName);
  if (!step) throw new AwsError('InvalidPluginName', 'The plugin name is not valid.');
  return step;
}

function newestFirst(account: AccountState): CommandRecord[] {
  return [...account.commands].reverse();
}

interface CommandFilter {
  key: string;
  value: string;
}

const COMMAND_FILTER_KEYS = new Set([
  'InvokedAfter',
  'InvokedBefore',
  'Status',
  'ExecutionStage',
  'DocumentName',
]);

function readCommandFilters(value: unknown): CommandFilter[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw new AwsError('InvalidFilter', 'Filters must be a list.');
  return value.map((raw) => {
    const key = String(raw?.key ?? '');
    const filterValue = String(raw?.value ?? '');
    if (!COMMAND_FILTER_KEYS.has(key))
      throw new AwsError('InvalidFilterKey', `The filter key ${key} is not valid.`);
    if ((key === 'InvokedAfter' || key === 'InvokedBefore') && Number.isNaN(Date.parse(filterValue))) {
      throw new AwsError('InvalidFilterValue', `The filter value ${filterValue} is not a valid date.`);
    }
    return { key, value: filterValue };
  });
}

function commandFilterMatches(
  filter: CommandFilter,
  command: CommandRecord,
  status: string,
  terminal: boolean,
) {
  switch (filter.key) {
    case 'InvokedAfter':
      return command.requestedAt >= Date.parse(filter.value);
    case 'InvokedBefore':
      return command.requestedAt <= Date.parse(filter.value);
    case 'Status':
      return status === filter.value;
    case 'DocumentName':
      return command.documentName === filter.value;
    default:
      return filter.value === (terminal ? 'Complete' : 'Executing');
  }
}

function optionalString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function requiredString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value === '')
    throw validationError(field, undefined, 'Member must not be null');
  return value;
}

function optionalCommandId(value: unknown): string | undefined {
  const id = optionalString(value);
  if (id !== undefined && id.length !== 36) {
    throw validationError('commandId', id, 'Member must have length equal to 36');
  }
  return id;
}

function isoDuration(ms: number): string {
  return `PT${Number((Math.max(0, ms) / 1000).toFixed(3))}S`;
}
