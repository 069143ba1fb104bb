import type { CallLog, CallRecord } from './call-log.js';
import { invocationViews, openInvocations, scheduledTimes } from './command-status.js';
import { agentBack } from './delayed-delivery.js';
import { type FleetIndexStats, type FleetInstanceSpec, fleetIndexStats, indexFleet } from './ec2-index.js';
import type { RunCommandEventEmitter, RunCommandEventStats, RunCommandEvents } from './events.js';
import type { FaultSpec, Faults } from './faults.js';
import type { DeployedFunction } from './lambda.js';
import { INSTANCE_ID } from './send-command-input.js';
import type {
  BootTiming,
  RegisteredInstance,
  RunCommandScript,
  SimulatorState,
  VisibilityLag,
} from './state.js';

/** What a test (or the sandbox, over `/_sim/`) can arrange and observe. */
export interface AwsSimulatorControl {
  /** How commands sent later end on this instance; `*` sets the account's default. */
  scriptRunCommand(accountId: string, instanceId: string, script: RunCommandScript): void;
  /**
   * An offline agent on a running instance shows ConnectionLost (still registered), and SendCommand
   * naming it fails whole with InvalidInstanceId ("SSM Agent isn't running"). One that goes offline
   * under an unfinished invocation leaves it as it was until the command expires (DeliveryTimedOut),
   * unless it comes back before that and reports after all.
   */
  setAgentOnline(accountId: string, instanceId: string, online: boolean): void;
  /**
   * `false`: the instance's agent never registered with SSM (e.g. one kept after a failed
   * provision), so SSM does not know it for good: absent from DescribeInstanceInformation, rejected
   * by SendCommand. `true` undoes that.
   */
  setAgentRegistered(accountId: string, instanceId: string, registered: boolean): void;
  /**
   * How long CancelCommand takes to reach a delivered (InProgress) invocation, which shows
   * Cancelling until then and ends Cancelled, unless its script ends first; 0 (at once) unless set.
   * Pending and Delayed invocations cancel at once.
   */
  setCancelDelay(accountId: string, delayMs: number): void;
  /**
   * Eventual consistency, 0 unless set; fields left out keep their value. ListCommands does not show
   * a command until `listCommandsMs` after its SendCommand; DescribeInstanceStatus does not know an
   * instance until `instanceStatusMs` after RunInstances launched it.
   */
  setVisibilityLag(accountId: string, lag: Partial<VisibilityLag>): void;
  /**
   * How long SSM takes to notice that an instance was terminated under an unfinished invocation,
   * which then ends Undeliverable; 0 (at once) unless set. Applies to terminations from now on.
   */
  setTerminationNotice(accountId: string, delayMs: number): void;
  /** Makes an instance SSM-managed without launching it in moto (e.g. for 50-instance fan-outs). */
  registerInstance(accountId: string, instanceId: string, info?: RegisteredInstance): void;
  /**
   * Adds instances (or replaces them, by id) in the account's fleet index. From the first call on,
   * the account's DescribeInstances and DescribeInstanceStatus are answered from the index, never by
   * moto (see ec2-index.ts), and every indexed instance is an SSM-managed node whose agent is online
   * (unless set otherwise), tags included, so SendCommand takes it by id or by tag.
   */
  indexFleet(accountId: string, instances: FleetInstanceSpec[]): void;
  /** How many instances the account's index holds and how many EC2 calls it answered. */
  fleetIndexStats(accountId: string): FleetIndexStats;
  /**
   * Applies to instances launched (or started from stopped) after this call; zeros without
   * `impaired` switch it off. `agentRegistrationMs` keeps a new instance unknown to SSM for that
   * long after its first boot reached `running`.
   */
  setBootTiming(accountId: string, timing: BootTiming): void;
  /** `accountId` `*` hits every account. Returns an id for reference in logs. */
  injectFault(accountId: string, fault: FaultSpec): string;
  clearFaults(accountId?: string): void;
  calls(accountId?: string, operation?: string): CallRecord[];
  resetCalls(accountId?: string): void;
  /**
   * Every invocation sent in the account, oldest command first and in target order within one,
   * with its status right now and when it is (or was) sent, started and ended as things stand.
   */
  invocations(accountId: string, instanceId?: string): SentInvocation[];
  /**
   * Deploys (or replaces) a Lambda function that Invoke runs: CommonJS source exporting `handler`,
   * such as a stack's inline ZipFile, with its environment variables.
   */
  deployFunction(accountId: string, name: string, fn: DeployedFunction): void;
  /** What a deployed function wrote with console.*, one entry per call, oldest first. */
  functionLogs(accountId: string, name: string): string[];
  /**
   * Delivers the account's Run Command status changes into an SQS queue in moto, as an EventBridge
   * rule on "EC2 Command Invocation Status-change Notification" targeting that queue would (see
   * events.ts): one message per invocation status change, its body the event JSON. Also covers
   * commands already under way, from their current status on. `undefined` switches it off and
   * drops what is still held back.
   */
  emitRunCommandEvents(accountId: string, options: RunCommandEvents | undefined): void;
  /** What the account's events came to so far: a test's signal that everything due has been sent. */
  runCommandEventStats(accountId: string): RunCommandEventStats;
  /** Forgets simulator state (not moto's) for one account, or for all. */
  reset(accountId?: string): void;
}

export interface SentInvocation {
  commandId: string;
  instanceId: string;
  documentName: string;
  parameters: Record<string, string[]>;
  comment: string;
  requestedAt: number;
  status: string;
  statusDetails: string;
  /**
   * Simulator clock times from the command's schedule (rate control, scripted outcomes), which may
   * lie in the future: a benchmark reads a command's makespan from them without waiting. Undefined
   * when it never happens as things stand (held back forever, a script that never ends); a later
   * cancel, agent loss or termination can still change them.
   */
  sentAt: number | undefined;
  startedAt: number | undefined;
  endedAt: number | undefined;
}

export function createControl(deps: {
  state: SimulatorState;
  faults: Faults;
  callLog: CallLog;
  clock: () => number;
  events: RunCommandEventEmitter;
}): AwsSimulatorControl {
  const { state, faults, callLog, clock, events } = deps;
  return {
    scriptRunCommand(accountId, instanceId, script) {
      state.account(accountId).scripts.set(instanceId, script);
    },
    setAgentOnline(accountId, instanceId, online) {
      const account = state.account(accountId);
      const now = clock();
      account.agents.set(instanceId, { online, since: now });
      if (online) agentBack(account, instanceId, now);
      // Open means not expired yet: an agent back in time picks the command up (or reports it) after all.
      for (const invocation of openInvocations(account.commands, instanceId, now)) {
        if (!online) invocation.agentLostAt ??= now;
        else delete invocation.agentLostAt;
      }
    },
    setAgentRegistered(accountId, instanceId, registered) {
      const { unregistered } = state.account(accountId);
      if (registered) unregistered.delete(instanceId);
      else unregistered.add(instanceId);
    },
    setCancelDelay(accountId, delayMs) {
      if (!(delayMs >= 0)) throw new Error('the cancel delay must be >= 0');
      state.account(accountId).cancelDelayMs = delayMs;
    },
    setVisibilityLag(accountId, lag) {
      for (const value of [lag.listCommandsMs, lag.instanceStatusMs]) {
        if (value !== undefined && !(value >= 0)) throw new Error('visibility lags must be >= 0');
      }
      const account = state.account(accountId);
      account.visibilityLag = { ...account.visibilityLag, ...definedOnly(lag) };
    },
    setTerminationNotice(accountId, delayMs) {
      if (!(delayMs >= 0)) throw new Error('the termination notice delay must be >= 0');
      state.account(accountId).terminationNoticeMs = delayMs;
    },
    registerInstance(accountId, instanceId, info = {}) {
      // SendCommand would reject a malformed id later; failing here points at the real mistake.
      if (!INSTANCE_ID.test(instanceId)) throw new Error(`not an instance id SSM accepts: ${instanceId}`);
      state.account(accountId).registered.set(instanceId, info);
    },
    indexFleet(accountId, instances) {
      indexFleet(state, accountId, instances, clock());
    },
    fleetIndexStats(accountId) {
      return fleetIndexStats(state, accountId);
    },
    setBootTiming(accountId, timing) {
      if (!(timing.pendingMs >= 0 && timing.initializingMs >= 0)) {
        throw new Error('boot timing needs pendingMs >= 0 and initializingMs >= 0');
      }
      if (timing.impaired !== undefined && timing.impaired !== 'system' && timing.impaired !== 'instance') {
        throw new Error(`boot timing impaired must be 'system' or 'instance', got ${timing.impaired}`);
      }
      if (timing.agentRegistrationMs !== undefined && !(timing.agentRegistrationMs >= 0)) {
        throw new Error('boot timing agentRegistrationMs must be >= 0');
      }
      // An impaired instance or a slow agent with no boot delay still needs its record.
      const off =
        timing.pendingMs === 0 &&
        timing.initializingMs === 0 &&
        !timing.impaired &&
        !timing.agentRegistrationMs;
      state.account(accountId).bootTiming = off ? undefined : { ...timing };
    },
    injectFault(accountId, fault) {
      return faults.add(accountId, fault);
    },
    clearFaults(accountId) {
      faults.clear(accountId);
    },
    calls(accountId, operation) {
      return callLog.list(accountId, operation);
    },
    resetCalls(accountId) {
      callLog.reset(accountId);
    },
    invocations(accountId, instanceId) {
      const now = clock();
      return state.account(accountId).commands.flatMap((command) => {
        // Read once per command: a command's schedule covers all its invocations.
        const views = invocationViews(command, now);
        const times = scheduledTimes(command);
        return command.invocations.flatMap((inv, i) => {
          if (instanceId && inv.instanceId !== instanceId) return [];
          const view = views[i];
          const time = times[i];
          if (!view || !time) return [];
          return [
            {
              commandId: command.commandId,
              instanceId: inv.instanceId,
              documentName: command.documentName,
              parameters: command.parameters,
              comment: command.comment,
              requestedAt: command.requestedAt,
              status: view.status,
              statusDetails: view.statusDetails,
              ...time,
            },
          ];
        });
      });
    },
    deployFunction(accountId, name, fn) {
      state.account(accountId).functions.set(name, { ...fn, logs: [] });
    },
    functionLogs(accountId, name) {
      return [...(state.account(accountId).functions.get(name)?.logs ?? [])];
    },
    emitRunCommandEvents(accountId, options) {
      events.configure(accountId, options);
    },
    runCommandEventStats(accountId) {
      return events.stats(accountId);
    },
    reset(accountId) {
      state.reset(accountId);
      faults.clear(accountId);
      callLog.reset(accountId);
      events.reset(accountId);
    },
  };
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
