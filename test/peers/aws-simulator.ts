/**
 * An AWS endpoint for tests and the sandbox: a small HTTP server in front of moto that owns what
 * moto lacks (Run Command with scripted outcomes over time, instance information, patch states, EC2
 * boot timing, AWS's failure paths and eventual consistency, the real limits, injected faults, a
 * call log, Run Command status-change events delivered into moto's SQS) and forwards every other
 * request to moto unchanged.
 * Point the real SDK clients at `url`; state is kept per `x-moto-account-id`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBootTimingHandlers } from './aws-simulator/boot-timing.js';
import { createCallLog } from './aws-simulator/call-log.js';
import { type AwsSimulatorControl, createControl } from './aws-simulator/control.js';
import { CONTROL_PREFIX, handleControl } from './aws-simulator/control-http.js';
import { withFleetIndex } from './aws-simulator/ec2-index.js';
import { createRunCommandEvents } from './aws-simulator/events.js';
import { createFaults, type FaultError, seededRandom } from './aws-simulator/faults.js';
import { createInstanceInformationHandler } from './aws-simulator/instance-information.js';
import { createLambdaInvokeHandler, invocationsRoute } from './aws-simulator/lambda.js';
import { createPatchStatesHandler } from './aws-simulator/patch-states.js';
import { createRunCommandHandlers } from './aws-simulator/run-command.js';
import { createState } from './aws-simulator/state.js';
import { createTerminationHandlers } from './aws-simulator/terminations.js';
import { createUpstream } from './aws-simulator/upstream.js';
import {
  type AwsCall,
  AwsError,
  errorReply,
  jsonReply,
  type Protocol,
  parseCall,
  type Reply,
  serverError,
  throttleError,
} from './aws-simulator/wire.js';

export type { CallRecord } from './aws-simulator/call-log.js';
export type { AwsSimulatorControl, SentInvocation } from './aws-simulator/control.js';
export type { FleetIndexStats, FleetInstanceSpec } from './aws-simulator/ec2-index.js';
export type { RunCommandEventStats, RunCommandEvents } from './aws-simulator/events.js';
export type {
  ErrorFault,
  FaultKind,
  FaultSpec,
  LatencyFault,
  ThrottleOrServerFault,
} from './aws-simulator/faults.js';
export type {
  BootTiming,
  PatchCounts,
  RegisteredInstance,
  RunCommandOutcome,
  RunCommandScript,
  VisibilityLag,
} from './aws-simulator/state.js';

export interface AwsSimulatorOptions {
  motoUrl: string;
  /** A fixed port for the sandbox; tests leave it out and get a free one. */
  port?: number;
  /** Drives Run Command timelines and boot timing, so tests advance time instead of sleeping. */
  clock?: () => number;
  /**
   * The account for clients that send no `x-moto-account-id` (a whole fleetbot process under test):
   * applied before anything else, so moto sees it too and the test stays isolated.
   */
  defaultAccountId?: string;
  /** Seed for fault `rate` draws; the same seed gives the same sequence of hits. */
  seed?: number;
}

export interface AwsSimulator {
  url: string;
  port: number;
  control: AwsSimulatorControl;
  /** How many requests a latency fault is holding back right now: a test's signal that one is parked. */
  held(): number;
  close(): Promise<void>;
}

type Handler = (call: AwsCall) => Promise<Reply>;

export async function startAwsSimulator(options: AwsSimulatorOptions): Promise<AwsSimulator> {
  const clock = options.clock ?? Date.now;
  const state = createState();
  const callLog = createCallLog();
  const faults = createFaults(seededRandom(options.seed ?? 1));
  const upstream = createUpstream(options.motoUrl);
  const events = createRunCommandEvents({ state, clock, motoUrl: options.motoUrl });
  const control = createControl({ state, faults, callLog, clock, events });
  const deps = { state, upstream, clock };

  const ssmJson: Record<string, (call: AwsCall) => Promise<unknown>> = {
    ...createRunCommandHandlers({ ...deps, events }),
    DescribeInstanceInformation: createInstanceInformationHandler(deps),
    DescribeInstancePatchStates: createPatchStatesHandler(deps),
  };
  const handlers = new Map<string, Handler>();
  // Invoke's route carries the function's name, so it is matched by pattern, not looked up.
  const invoke = createLambdaInvokeHandler({ state, selfUrl: () => `http://127.0.0.1:${port}` });
  const routed = (call: AwsCall): Handler | undefined =>
    handlers.get(`${call.service}:${call.operation}`) ??
    (call.service === 'lambda' && invocationsRoute.test(call.operation) ? invoke : undefined);
  for (const [operation, handle] of Object.entries(ssmJson)) {
    handlers.set(`ssm:${operation}`, async (call) => jsonReply(await handle(call)));
  }
  // An account with a fleet index has its EC2 reads answered there (ec2-index.ts), not by moto.
  for (const [operation, handle] of Object.entries(
    withFleetIndex(deps, { ...createBootTimingHandlers(deps), ...createTerminationHandlers(deps) }),
  )) {
    handlers.set(`ec2:${operation}`, handle);
  }

  // Latency faults hold requests open; closing releases them instead of waiting them out.
  const waits = new Set<() => void>();
  const delay = (ms: number) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        waits.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      waits.add(done);
    });

  async function serveAws(call: AwsCall, res: ServerResponse): Promise<number> {
    const decision = faults.decide(call.accountId, call.operation);
    if (decision.latencyMs > 0) await delay(decision.latencyMs);
    if (decision.error)
      return send(res, errorReply(call.protocol, faultError(call.protocol, decision.error)));
    const handler = routed(call);
    if (!handler) return upstream.pipe(call, res);
    try {
      return send(res, await handler(call));
    } catch (error) {
      if (error instanceof AwsError) return send(res, errorReply(call.protocol, error));
      throw error;
    }
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    if (url.startsWith(CONTROL_PREFIX)) {
      send(res, handleControl(control, method, url, body));
      return;
    }
    if (options.defaultAccountId && !req.headers['x-moto-account-id'])
      req.headers['x-moto-account-id'] = options.defaultAccountId;
    const call = parseCall(method, url, req.headers, body);
    const at = clock();
    let status: number;
    try {
      status = await serveAws(call, res);
    } catch (error) {
      const detail = `AWS simulator failed: ${error instanceof Error ? error.message : String(error)}`;
      status = send(res, errorReply(call.protocol, serverError(call.protocol, detail)));
    }
    callLog.record(call, at, status);
  }

  let port = 0;
  const server = createServer((req, res) => {
    serve(req, res).catch(() => res.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    control,
    held: () => waits.size,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      events.close();
      upstream.abortAll();
      for (const release of [...waits]) release();
      server.closeAllConnections();
      await closed;
    },
  };
}

/** Throttles and server errors use each protocol's own code; an `error` fault names its code itself. */
function faultError(protocol: Protocol, error: FaultError): AwsError {
  if (error.kind === 'throttle') return throttleError(protocol);
  if (error.kind === 'server-error') return serverError(protocol);
  return new AwsError(error.code, error.message, error.status);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/** Writes a whole reply unless the connection is already gone; returns the status for the call log. */
function send(res: ServerResponse, reply: Reply): number {
  if (res.headersSent || res.destroyed) return reply.status;
  const body = typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body;
  res.writeHead(reply.status, { ...reply.headers, 'content-length': String(body.length) });
  res.end(body);
  return reply.status;
}
