/**
 * The control API over HTTP under `/_sim/`, for a separate process such as the local sandbox.
 * It validates and then calls the same `AwsSimulatorControl` the tests use in process.
 */
import { z } from 'zod';
import type { AwsSimulatorControl } from './control.js';
import { INVOCATION_STATUSES } from './events.js';
import { ERROR_CODE } from './faults.js';
import type { Reply } from './wire.js';

const account = z.string().regex(/^\d{12}$/, 'a 12-digit account id');

const outcome = z.strictObject({
  status: z.enum(['Success', 'Failed', 'TimedOut', 'InProgress']),
  output: z.string().optional(),
  errorOutput: z.string().optional(),
  responseCode: z.number().int().optional(),
  afterMs: z.number().min(0).optional(),
  pendingMs: z.number().min(0).optional(),
  patchState: z
    .strictObject({
      installed: z.number().int().min(0).optional(),
      installedOther: z.number().int().min(0).optional(),
      installedPendingReboot: z.number().int().min(0).optional(),
      installedRejected: z.number().int().min(0).optional(),
      missing: z.number().int().min(0).optional(),
      failed: z.number().int().min(0).optional(),
      notApplicable: z.number().int().min(0).optional(),
    })
    .optional(),
});

const faultTarget = {
  accountId: z.union([account, z.literal('*')]).default('*'),
  operation: z.string().min(1),
  rate: z.number().min(0).max(1).optional(),
  count: z.number().int().positive().optional(),
};

const bodies = {
  deployFunction: z.strictObject({
    accountId: account,
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
    code: z.string().min(1),
    environment: z.record(z.string(), z.string()).default({}),
  }),
  script: z.strictObject({ accountId: account, instanceId: z.string().default('*'), outcome }),
  agent: z.strictObject({ accountId: account, instanceId: z.string(), online: z.boolean() }),
  agentRegistered: z.strictObject({ accountId: account, instanceId: z.string(), registered: z.boolean() }),
  terminationNotice: z.strictObject({ accountId: account, delayMs: z.number().min(0) }),
  cancelDelay: z.strictObject({ accountId: account, delayMs: z.number().min(0) }),
  visibilityLag: z.strictObject({
    accountId: account,
    listCommandsMs: z.number().min(0).optional(),
    instanceStatusMs: z.number().min(0).optional(),
  }),
  instances: z.strictObject({
    accountId: account,
    instanceId: z.string(),
    info: z
      .strictObject({
        platformType: z.enum(['Linux', 'Windows', 'MacOS']).optional(),
        platformName: z.string().optional(),
        platformVersion: z.string().optional(),
        ipAddress: z.string().optional(),
        computerName: z.string().optional(),
        resourceType: z.enum(['EC2Instance', 'ManagedInstance']).optional(),
        tags: z.record(z.string(), z.string()).optional(),
      })
      .optional(),
  }),
  bootTiming: z.strictObject({
    accountId: account,
    pendingMs: z.number().min(0),
    initializingMs: z.number().min(0),
    impaired: z.enum(['system', 'instance']).optional(),
    agentRegistrationMs: z.number().min(0).optional(),
  }),
  fault: z.discriminatedUnion('kind', [
    z.strictObject({ ...faultTarget, kind: z.enum(['throttle', 'server-error']) }),
    z.strictObject({ ...faultTarget, kind: z.literal('latency'), latencyMs: z.number().min(0).optional() }),
    z.strictObject({
      ...faultTarget,
      kind: z.literal('error'),
      code: z.string().regex(ERROR_CODE, 'an AWS error code such as InvalidAMIID.NotFound'),
      message: z.string().optional(),
      status: z.number().int().min(400).max(599).optional(),
    }),
  ]),
  runCommandEvents: z.strictObject({
    accountId: account,
    queueUrl: z.string().min(1),
    statuses: z.array(z.enum(INVOCATION_STATUSES)).optional(),
    documents: z.array(z.string().min(1)).optional(),
    delayMs: z.number().min(0).optional(),
    jitterMs: z.number().min(0).optional(),
    lossRate: z.number().min(0).max(1).optional(),
    duplicateRate: z.number().min(0).max(1).optional(),
    seed: z.string().optional(),
  }),
  fleetIndex: z.strictObject({
    accountId: account,
    instances: z.array(
      z.strictObject({
        instanceId: z.string(),
        state: z
          .enum(['pending', 'running', 'shutting-down', 'terminated', 'stopping', 'stopped'])
          .optional(),
        tags: z.record(z.string(), z.string()).default({}),
        launchTime: z.iso.datetime().optional(),
        instanceType: z.string().min(1).optional(),
      }),
    ),
  }),
  reset: z.strictObject({ accountId: account.optional() }),
};

export const CONTROL_PREFIX = '/_sim/';

export function handleControl(
  control: AwsSimulatorControl,
  method: string,
  url: string,
  body: Buffer,
): Reply {
  const { pathname, searchParams } = new URL(url, 'http://simulator');
  const route = `${method} ${pathname.slice(CONTROL_PREFIX.length - 1)}`;
  const query = (name: string) => searchParams.get(name) ?? undefined;
  try {
    switch (route) {
      case 'GET /health':
        return ok({ ok: true });
      case 'POST /script': {
        const input = parse(bodies.script, body);
        control.scriptRunCommand(input.accountId, input.instanceId, input.outcome);
        return ok({ ok: true });
      }
      case 'POST /agent': {
        const input = parse(bodies.agent, body);
        control.setAgentOnline(input.accountId, input.instanceId, input.online);
        return ok({ ok: true });
      }
      case 'POST /agent-registered': {
        const input = parse(bodies.agentRegistered, body);
        control.setAgentRegistered(input.accountId, input.instanceId, input.registered);
        return ok({ ok: true });
      }
      case 'POST /cancel-delay': {
        const input = parse(bodies.cancelDelay, body);
        control.setCancelDelay(input.accountId, input.delayMs);
        return ok({ ok: true });
      }
      case 'POST /visibility-lag': {
        const { accountId, ...lag } = parse(bodies.visibilityLag, body);
        control.setVisibilityLag(accountId, lag);
        return ok({ ok: true });
      }
      case 'POST /termination-notice': {
        const input = parse(bodies.terminationNotice, body);
        control.setTerminationNotice(input.accountId, input.delayMs);
        return ok({ ok: true });
      }
      case 'POST /instances': {
        const input = parse(bodies.instances, body);
        control.registerInstance(input.accountId, input.instanceId, input.info);
        return ok({ ok: true });
      }
      case 'POST /boot-timing': {
        const input = parse(bodies.bootTiming, body);
        control.setBootTiming(input.accountId, input);
        return ok({ ok: true });
      }
      case 'POST /fault': {
        const { accountId, ...fault } = parse(bodies.fault, body);
        return ok({ id: control.injectFault(accountId, fault) });
      }
      case 'DELETE /fault':
        control.clearFaults(query('accountId'));
        return ok({ ok: true });
      case 'GET /calls':
        return ok({ calls: control.calls(query('accountId'), query('operation')) });
      case 'DELETE /calls':
        control.resetCalls(query('accountId'));
        return ok({ ok: true });
      case 'GET /invocations': {
        const accountId = query('accountId');
        if (!accountId) return fail(400, 'accountId is required');
        return ok({ invocations: control.invocations(accountId, query('instanceId')) });
      }
      case 'POST /function': {
        const { accountId, name, ...fn } = parse(bodies.deployFunction, body);
        control.deployFunction(accountId, name, fn);
        return ok({ ok: true });
      }
      case 'GET /function-logs': {
        const accountId = query('accountId');
        const name = query('name');
        if (!accountId || !name) return fail(400, 'accountId and name are required');
        return ok({ logs: control.functionLogs(accountId, name) });
      }
      case 'POST /run-command-events': {
        const { accountId, ...events } = parse(bodies.runCommandEvents, body);
        control.emitRunCommandEvents(accountId, events);
        return ok({ ok: true });
      }
      case 'DELETE /run-command-events': {
        const accountId = query('accountId');
        if (!accountId) return fail(400, 'accountId is required');
        control.emitRunCommandEvents(accountId, undefined);
        return ok({ ok: true });
      }
      case 'GET /run-command-events': {
        const accountId = query('accountId');
        if (!accountId) return fail(400, 'accountId is required');
        return ok({ stats: control.runCommandEventStats(accountId) });
      }
      case 'POST /fleet-index': {
        const { accountId, instances } = parse(bodies.fleetIndex, body);
        control.indexFleet(
          accountId,
          instances.map(({ launchTime, ...instance }) => ({
            ...instance,
            ...(launchTime ? { launchTime: new Date(launchTime) } : {}),
          })),
        );
        return ok({ ok: true });
      }
      case 'GET /fleet-index': {
        const accountId = query('accountId');
        if (!accountId) return fail(400, 'accountId is required');
        return ok(control.fleetIndexStats(accountId));
      }
      case 'POST /reset':
        control.reset(parse(bodies.reset, body).accountId);
        return ok({ ok: true });
      default:
        return fail(404, `no control route ${route}`);
    }
  } catch (error) {
    return fail(400, error instanceof Error ? error.message : String(error));
  }
}

function parse<T>(schema: z.ZodType<T>, body: Buffer): T {
  let value: unknown;
  try {
    value = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
  } catch {
    throw new Error('the body must be JSON');
  }
  const result = schema.safeParse(value);
  if (!result.success) throw new Error(z.prettifyError(result.error));
  return result.data;
}

function ok(value: unknown): Reply {
  return { status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify(value) };
}

function fail(status: number, error: string): Reply {
  return { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ error }) };
}
