/**
 * Run Command status-change events, delivered into an SQS queue held by moto the way an EventBridge
 * rule on `source: aws.ssm`, `detail-type: EC2 Command Invocation Status-change Notification` with
 * that queue as its target delivers them: one message per event, its body the event JSON.
 *
 * Statuses are never stored as they change (command-status.ts derives them from the clock), so
 * nothing calls back when an invocation finishes. Instead every open invocation of an account with
 * events switched on has a tracker: the moments its status can change are read from the same
 * record fields invocationView reads, a min-heap keeps the next such moment of every tracker, and
 * one timer wakes for the earliest. A wake re-reads invocationView at each passed moment in order,
 * so a status that lasted only until the next moment still gets its event, at the moment it began.
 * What a record cannot foresee (a cancel, an agent going offline, a termination, an injected clock
 * moved on by a test) is caught by the cancel hook and by re-checking the open invocations every
 * `recheckMs`.
 */
import { randomUUID } from 'node:crypto';
import { expiresAt, invocationView } from './command-status.js';
import { seededRandom } from './faults.js';
import type { CommandRecord, InvocationRecord, SimulatorState } from './state.js';

/**
 * The values of CommandInvocation's Status, which the event's `detail.status` carries ("Pending |
 * InProgress | Delayed | Success | Cancelled | TimedOut | Failed | Cancelling",
 * https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandInvocation.html).
 * StatusDetails values are not among them: an Undeliverable invocation shows Failed, a delivery
 * timeout TimedOut.
 */
export const INVOCATION_STATUSES = [
  'Pending',
  'InProgress',
  'Delayed',
  'Success',
  'Cancelled',
  'TimedOut',
  'Failed',
  'Cancelling',
] as const;

/** The rule and its SQS target, plus how faithfully EventBridge delivers. */
export interface RunCommandEvents {
  /** The target queue, in moto under the same account and in the commands' region. */
  queueUrl: string;
  /** The rule's `detail.status` filter; every status change when omitted. */
  statuses?: string[];
  /** The rule's `detail.document-name` filter; every document when omitted. */
  documents?: string[];
  /** How long after the status change an event reaches the queue (real time); 200 ms when omitted. */
  delayMs?: number;
  /** Up to this much more delay, drawn per message, so events may arrive out of order; 0 when omitted. */
  jitterMs?: number;
  /** Chance (0..1) that an event is lost on the way; 0 when omitted. */
  lossRate?: number;
  /** Chance (0..1) that an event is delivered twice, as two messages with the same event id; 0 when omitted. */
  duplicateRate?: number;
  /** Seed for the loss, duplication and jitter draws; the account id when omitted. */
  seed?: string;
}

export interface RunCommandEventStats {
  /** Events that passed the rule's filters. */
  matched: number;
  /** Matched events dropped by `lossRate`. */
  lost: number;
  /** SQS messages the queue took; a duplicated event counts twice. */
  delivered: number;
  /** SQS messages the queue refused or that never reached it (see `lastError`). */
  failed: number;
  /** Messages held back by the delay or on their way to the queue right now. */
  pending: number;
  /** Invocations the rule watches that have not ended yet. */
  open: number;
  lastError?: string;
}

/** What Run Command tells the emitter: a command was sent, or changed in a way no clock foresees (a cancel). */
export interface CommandEventsHook {
  commandSent(accountId: string, command: CommandRecord): void;
  commandChanged(accountId: string, command: CommandRecord): void;
}

export interface RunCommandEventEmitter extends CommandEventsHook {
  /** Switches events on for the account (replacing its rule) or, with `undefined`, off. */
  configure(accountId: string, options: RunCommandEvents | undefined): void;
  stats(accountId: string): RunCommandEventStats;
  /** Forgets the rule of one account, or of all. */
  reset(accountId?: string): void;
  /** Stops every timer and abandons whatever is still held back or in flight. */
  close(): void;
}

/**
 * EventBridge's delivery to a target is not instant; AWS publishes no figure, so this is a plausible
 * sub-second default that keeps tests quick. Loss and duplication model AWS service events being
 * sent "best effort" ("in some rare cases an event might not be delivered") or "at least once"
 * (https://docs.aws.amazon.com/eventbridge/latest/ref/event-delivery-level.html).
 */
const DEFAULT_DELAY_MS = 200;
const DEFAULT_RECHECK_MS = 1000;
/** SendMessageBatch takes at most 10 entries. */
const BATCH_SIZE = 10;
/** A wake that found nothing due (an injected clock standing still) waits at least this long before the next. */
const IDLE_WAKE_MS = 25;
/** Far-off changes are re-armed in steps, well inside setTimeout's 2^31-1 ms limit. */
const MAX_WAIT_MS = 60_000;

interface Tracker {
  accountId: string;
  command: CommandRecord;
  invocation: InvocationRecord;
  /** The status last seen, whether or not the rule let its event through. */
  status: string;
  /** The simulator time up to which every change has been seen. */
  checkedAt: number;
  /** The next moment its status can change; infinite when only an outside event can change it. */
  dueAt: number;
  /**
   * Moments other than the request at which it may have been sent: a target that MaxConcurrency
   * holds back is sent when another target of the command ends (rate-control.ts), so every end
   * seen while this one waited is a candidate; those whose every consequence has passed are dropped.
   */
  sends: number[];
}

interface Rule {
  options: RunCommandEvents;
  random: () => number;
  /** Open invocations only: a terminal one never changes again. */
  trackers: Map<InvocationRecord, Tracker>;
  /** The same trackers by command, for what one invocation's end or a cancel does to the others. */
  byCommand: Map<CommandRecord, Set<Tracker>>;
  stats: RunCommandEventStats;
}

interface Message {
  rule: Rule;
  accountId: string;
  region: string;
  queueUrl: string;
  body: string;
  /** Real time (Date.now) when it may be sent. */
  at: number;
  seq: number;
}

export function createRunCommandEvents(deps: {
  state: SimulatorState;
  clock: () => number;
  motoUrl: string;
  /** How often open invocations are re-checked for changes no record foresaw. */
  recheckMs?: number;
}): RunCommandEventEmitter {
  const { clock } = deps;
  const rules = new Map<string, Rule>();
  const due = new MinHeap<{ at: number; tracker: Tracker }>((a, b) => a.at - b.at);
  const held = new MinHeap<Message>((a, b) => a.at - b.at || a.seq - b.seq);
  /** Messages due for sending, one queue of them per target, so a slow target holds up no other. */
  const outboxes = new Map<string, Message[]>();
  let seq = 0;
  let dueTimer: NodeJS.Timeout | undefined;
  let dueTimerAt = Number.POSITIVE_INFINITY;
  let heldTimer: NodeJS.Timeout | undefined;
  let heldTimerAt = Number.POSITIVE_INFINITY;
  let recheck: NodeJS.Timeout | undefined;
  const sending = new Set<string>();
  let closed = false;
  const aborts = new Set<AbortController>();

  function emit(rule: Rule, tracker: Tracker, status: string, at: number) {
    const { options } = rule;
    const { command, invocation, accountId } = tracker;
    if (options.statuses && !options.statuses.includes(status)) return;
    if (options.documents && !options.documents.includes(command.documentName)) return;
    rule.stats.matched += 1;
    if (rule.random() < (options.lossRate ?? 0)) {
      rule.stats.lost += 1;
      return;
    }
    const copies = rule.random() < (options.duplicateRate ?? 0) ? 2 : 1;
    const body = JSON.stringify(eventJson(accountId, command, invocation, status, at));
    const now = Date.now();
    for (let i = 0; i < copies; i++) {
      const jitter = (options.jitterMs ?? 0) * rule.random();
      held.push({
        rule,
        accountId,
        region: command.region,
        queueUrl: options.queueUrl,
        body,
        at: now + (options.delayMs ?? DEFAULT_DELAY_MS) + jitter,
        seq: seq++,
      });
      rule.stats.pending += 1;
    }
  }

  /** Emits every change since the tracker was last checked, each at its own moment, then plans the next. */
  function check(rule: Rule, tracker: Tracker, now: number) {
    const { command, invocation } = tracker;
    const moments = changeMoments(tracker);
    const points = moments.filter((t) => t > tracker.checkedAt && t < now).sort((a, b) => a - b);
    // A new invocation's first status is read at the moment it was sent.
    if (tracker.status === '' && tracker.checkedAt < now) points.unshift(tracker.checkedAt);
    points.push(now);
    let terminal = false;
    for (const at of points) {
      const view = invocationView(command, invocation, at);
      terminal = view.terminal;
      if (view.status === tracker.status) continue;
      tracker.status = view.status;
      emit(rule, tracker, view.status, at);
      if (view.terminal) freed(rule, tracker, at);
    }
    tracker.checkedAt = Math.max(tracker.checkedAt, now);
    if (terminal) {
      untrack(rule, tracker);
      return;
    }
    const { pendingMs = 0, afterMs = 0 } = invocation.outcome;
    tracker.sends = tracker.sends.filter((t) => t + Math.max(pendingMs, afterMs) > tracker.checkedAt);
    const next = Math.min(...moments.filter((t) => t > now));
    if (next !== tracker.dueAt) {
      tracker.dueAt = next;
      if (Number.isFinite(next)) due.push({ at: next, tracker });
    }
  }

  /** A sibling ended at `at`: each one still waiting may be sent then, and changes from then on. */
  function freed(rule: Rule, ended: Tracker, at: number) {
    for (const sibling of rule.byCommand.get(ended.command) ?? []) {
      if (sibling === ended || (sibling.status !== 'Pending' && sibling.status !== 'Delayed')) continue;
      sibling.sends.push(at);
      const next = Math.min(...changeMoments(sibling).filter((t) => t > sibling.checkedAt));
      if (next < sibling.dueAt) {
        sibling.dueAt = next;
        due.push({ at: next, tracker: sibling });
      }
    }
  }

  function track(accountId: string, rule: Rule, command: CommandRecord, invocation: InvocationRecord) {
    const tracker: Tracker = {
      accountId,
      command,
      invocation,
      status: '',
      checkedAt: command.requestedAt,
      dueAt: Number.POSITIVE_INFINITY,
      sends: [],
    };
    rule.trackers.set(invocation, tracker);
    const siblings = rule.byCommand.get(command) ?? new Set();
    siblings.add(tracker);
    rule.byCommand.set(command, siblings);
    return tracker;
  }

  function untrack(rule: Rule, tracker: Tracker) {
    rule.trackers.delete(tracker.invocation);
    const siblings = rule.byCommand.get(tracker.command);
    siblings?.delete(tracker);
    if (siblings?.size === 0) rule.byCommand.delete(tracker.command);
    tracker.dueAt = Number.POSITIVE_INFINITY;
  }

  function live(tracker: Tracker): Rule | undefined {
    const rule = rules.get(tracker.accountId);
    return rule?.trackers.get(tracker.invocation) === tracker ? rule : undefined;
  }

  function armDue(minDelay = 0) {
    if (closed) return;
    let top = due.peek();
    while (top && (top.at !== top.tracker.dueAt || !live(top.tracker))) {
      due.pop();
      top = due.peek();
    }
    if (!top) return;
    const delay = Math.min(MAX_WAIT_MS, Math.max(minDelay, top.at - clock()));
    const fireAt = Date.now() + delay;
    if (dueTimer && dueTimerAt <= fireAt) return;
    clearTimeout(dueTimer);
    dueTimerAt = fireAt;
    dueTimer = setTimeout(wakeDue, delay);
    dueTimer.unref();
  }

  function wakeDue() {
    dueTimer = undefined;
    dueTimerAt = Number.POSITIVE_INFINITY;
    const now = clock();
    let ran = false;
    for (let top = due.peek(); top && top.at <= now; top = due.peek()) {
      due.pop();
      const rule = live(top.tracker);
      if (!rule || top.at !== top.tracker.dueAt) continue;
      check(rule, top.tracker, now);
      ran = true;
    }
    armDue(ran ? 0 : IDLE_WAKE_MS);
    armHeld();
  }

  function recheckAll() {
    const now = clock();
    for (const rule of rules.values()) {
      for (const tracker of [...rule.trackers.values()]) check(rule, tracker, now);
    }
    armDue();
    armHeld();
  }

  function armHeld() {
    const top = held.peek();
    if (closed || !top) return;
    // Jitter can make a new message due before the one the timer waits for.
    if (heldTimer && heldTimerAt <= top.at) return;
    clearTimeout(heldTimer);
    heldTimerAt = top.at;
    heldTimer = setTimeout(wakeHeld, Math.max(0, top.at - Date.now()));
    heldTimer.unref();
  }

  function wakeHeld() {
    heldTimer = undefined;
    heldTimerAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    const targets = new Set<string>();
    for (let next = held.peek(); next && next.at <= now; next = held.peek()) {
      const message = held.pop();
      const target = targetOf(message);
      const outbox = outboxes.get(target) ?? [];
      outbox.push(message);
      outboxes.set(target, outbox);
      targets.add(target);
    }
    armHeld();
    for (const target of targets) void drain(target);
  }

  /** One batch at a time per target, so messages reach the queue in the order they became due. */
  async function drain(target: string) {
    if (sending.has(target)) return;
    sending.add(target);
    try {
      for (let outbox = outboxes.get(target); outbox?.length && !closed; outbox = outboxes.get(target)) {
        await sendBatch(outbox.splice(0, BATCH_SIZE));
        if (outbox.length === 0 && outboxes.get(target) === outbox) outboxes.delete(target);
      }
    } finally {
      sending.delete(target);
    }
  }

  async function sendBatch(batch: Message[]) {
    const [first] = batch as [Message];
    const { rule } = first;
    const settle = (delivered: number, failed: number, error?: string) => {
      rule.stats.pending -= batch.length;
      rule.stats.delivered += delivered;
      rule.stats.failed += failed;
      if (error) rule.stats.lastError = error;
    };
    const abort = new AbortController();
    aborts.add(abort);
    try {
      const response = await fetch(new URL('/', deps.motoUrl), {
        method: 'POST',
        signal: abort.signal,
        headers: {
          'content-type': 'application/x-amz-json-1.0',
          'x-amz-target': 'AmazonSQS.SendMessageBatch',
          // moto routes by the credential scope and the account header; it checks no signature.
          authorization: `AWS4-HMAC-SHA256 Credential=testing/20240101/${first.region}/sqs/aws4_request, SignedHeaders=host, Signature=0`,
          'x-moto-account-id': first.accountId,
        },
        body: JSON.stringify({
          QueueUrl: first.queueUrl,
          Entries: batch.map((message, i) => ({ Id: String(i), MessageBody: message.body })),
        }),
      });
      const text = await response.text();
      if (!response.ok) {
        settle(0, batch.length, `SendMessageBatch answered ${response.status}: ${text}`);
        return;
      }
      const result = JSON.parse(text) as { Successful?: unknown[]; Failed?: { Message?: string }[] };
      const failed = result.Failed ?? [];
      settle(result.Successful?.length ?? 0, failed.length, failed[0]?.Message);
    } catch (error) {
      settle(0, batch.length, error instanceof Error ? error.message : String(error));
    } finally {
      aborts.delete(abort);
    }
  }

  function dropHeld(accountId: string | undefined) {
    const keep = (m: Message) => accountId !== undefined && m.accountId !== accountId;
    const kept = held.drain().filter(keep);
    for (const m of kept) held.push(m);
    for (const [target, outbox] of outboxes) {
      const kept = outbox.filter(keep);
      if (kept.length === 0) outboxes.delete(target);
      else outboxes.set(target, kept);
    }
  }

  function forget(accountId: string | undefined) {
    if (accountId === undefined) rules.clear();
    else rules.delete(accountId);
    dropHeld(accountId);
    if (rules.size === 0) {
      clearInterval(recheck);
      recheck = undefined;
    }
  }

  return {
    configure(accountId, options) {
      if (closed) throw new Error('the simulator is closed');
      if (options === undefined) {
        forget(accountId);
        return;
      }
      checkOptions(options);
      const random = seededRandom(hashSeed(options.seed ?? accountId));
      const existing = rules.get(accountId);
      if (existing) {
        // A changed rule keeps its trackers and counts; draws restart from the (new) seed.
        existing.options = { ...options };
        existing.random = random;
      } else {
        const rule: Rule = {
          options: { ...options },
          random,
          trackers: new Map(),
          byCommand: new Map(),
          stats: noStats(),
        };
        rules.set(accountId, rule);
        // A rule sees changes from its creation on: what is open now is tracked from its current status.
        const now = clock();
        for (const command of deps.state.account(accountId).commands) {
          for (const invocation of command.invocations) {
            const view = invocationView(command, invocation, now);
            if (view.terminal) continue;
            const tracker = track(accountId, rule, command, invocation);
            tracker.status = view.status;
            tracker.checkedAt = now;
            check(rule, tracker, now);
          }
        }
        armDue();
      }
      if (!recheck) {
        recheck = setInterval(recheckAll, deps.recheckMs ?? DEFAULT_RECHECK_MS);
        recheck.unref();
      }
    },
    stats(accountId) {
      const rule = rules.get(accountId);
      return rule ? { ...rule.stats, open: rule.trackers.size } : noStats();
    },
    reset(accountId) {
      forget(accountId);
    },
    commandSent(accountId, command) {
      const rule = rules.get(accountId);
      if (!rule) return;
      const now = clock();
      for (const invocation of command.invocations) {
        // The first status (Pending, Delayed, or InProgress when the agent has it at once) is a change
        // too, from no invocation at all.
        check(rule, track(accountId, rule, command, invocation), now);
      }
      armDue();
      armHeld();
    },
    commandChanged(accountId, command) {
      const rule = rules.get(accountId);
      if (!rule) return;
      const now = clock();
      for (const tracker of [...(rule.byCommand.get(command) ?? [])]) check(rule, tracker, now);
      armDue();
      armHeld();
    },
    close() {
      closed = true;
      clearTimeout(dueTimer);
      clearTimeout(heldTimer);
      clearInterval(recheck);
      for (const abort of aborts) abort.abort();
      rules.clear();
      held.drain();
      outboxes.clear();
    },
  };
}

/**
 * The event as SSM puts it on the bus, field for field as in AWS's example of "Run Command
 * Invocation Status-change Notification"
 * (https://docs.aws.amazon.com/systems-manager/latest/userguide/monitoring-systems-manager-event-examples.html):
 * `time` in whole seconds, `requested-date-time` with milliseconds, the instance's ARN as the resource.
 */
export function eventJson(
  accountId: string,
  command: CommandRecord,
  invocation: InvocationRecord,
  status: string,
  at: number,
) {
  return {
    version: '0',
    id: randomUUID(),
    'detail-type': 'EC2 Command Invocation Status-change Notification',
    source: 'aws.ssm',
    account: accountId,
    time: new Date(at).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    region: command.region,
    resources: [`arn:aws:ec2:${command.region}:${accountId}:instance/${invocation.instanceId}`],
    detail: {
      'command-id': command.commandId,
      'document-name': command.documentName,
      'instance-id': invocation.instanceId,
      'requested-date-time': new Date(command.requestedAt).toISOString(),
      status,
    },
  };
}

/**
 * Every moment at which invocationView can answer differently, from the fields it reads: the send
 * and pickup, the script's start and end, expiry, the cancel, the agent's loss and the termination.
 * Some of them change nothing; a check at such a moment just finds the same status.
 */
function changeMoments(tracker: Tracker): number[] {
  const { command, invocation, sends } = tracker;
  const { pendingMs = 0, afterMs = 0 } = invocation.outcome;
  const origins = [command.requestedAt, invocation.pickedUpAt, ...sends];
  const moments = [
    expiresAt(command),
    invocation.cancelRequestedAt,
    invocation.cancelledAt,
    invocation.agentLostAt,
    invocation.instanceGoneAt,
    invocation.undeliverableAt,
    ...origins.flatMap((t) => (t === undefined ? [] : [t, t + pendingMs, t + afterMs])),
  ];
  return moments.filter((t): t is number => t !== undefined && Number.isFinite(t));
}

function checkOptions(options: RunCommandEvents) {
  if (typeof options.queueUrl !== 'string' || options.queueUrl === '')
    throw new Error('run command events need a queueUrl');
  for (const status of options.statuses ?? []) {
    if (!(INVOCATION_STATUSES as readonly string[]).includes(status))
      throw new Error(
        `not a command invocation status: ${status} (one of ${INVOCATION_STATUSES.join(', ')})`,
      );
  }
  for (const [name, value] of [
    ['delayMs', options.delayMs],
    ['jitterMs', options.jitterMs],
  ] as const) {
    if (value !== undefined && !(value >= 0)) throw new Error(`${name} must be >= 0`);
  }
  for (const [name, value] of [
    ['lossRate', options.lossRate],
    ['duplicateRate', options.duplicateRate],
  ] as const) {
    if (value !== undefined && !(value >= 0 && value <= 1)) throw new Error(`${name} must be within 0..1`);
  }
}

function noStats(): RunCommandEventStats {
  return { matched: 0, lost: 0, delivered: 0, failed: 0, pending: 0, open: 0 };
}

function targetOf(message: Message): string {
  return JSON.stringify([message.accountId, message.region, message.queueUrl]);
}

/** FNV-1a: a string seed becomes the number seededRandom wants. */
function hashSeed(seed: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < seed.length; i++) {
    hash ^= seed.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** A binary min-heap: thousands of due moments cost one timer and O(log n) per change. */
class MinHeap<T> {
  private items: T[] = [];
  constructor(private readonly before: (a: T, b: T) => number) {}

  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T) {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.before(items[i] as T, items[parent] as T) >= 0) break;
      [items[i], items[parent]] = [items[parent] as T, items[i] as T];
      i = parent;
    }
  }

  /** Only called when peek() returned an item. */
  pop(): T {
    const items = this.items;
    const top = items[0] as T;
    const last = items.pop() as T;
    if (items.length > 0) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let least = i;
        if (left < items.length && this.before(items[left] as T, items[least] as T) < 0) least = left;
        if (right < items.length && this.before(items[right] as T, items[least] as T) < 0) least = right;
        if (least === i) break;
        [items[i], items[least]] = [items[least] as T, items[i] as T];
        i = least;
      }
    }
    return top;
  }

  /** Empties the heap, returning what it held in no particular order. */
  drain(): T[] {
    const all = this.items;
    this.items = [];
    return all;
  }
}
