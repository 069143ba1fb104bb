import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { withAccount } from '../aws-account.js';
import type { SimulatorState } from './state.js';
import { type AwsCall, AwsError, type Reply } from './wire.js';

/**
 * Lambda's Invoke for functions deployed into the simulator (moto runs functions only in Docker,
 * which CI does not have). A function is CommonJS source, such as a stack's inline `ZipFile`, run in
 * this process with the environment it was deployed with. Its AWS SDK clients are pointed back at the
 * simulator as the invoking account, the way a function reaches its own account with its role.
 */

/** What a function is deployed with: its `index.js` and its `Environment.Variables`. */
export interface DeployedFunction {
  code: string;
  environment: Record<string, string>;
}

/** A deployed function and what it wrote to its log (CloudWatch Logs, for a real one). */
export interface FunctionRecord extends DeployedFunction {
  logs: string[];
}

type Handler = (event: unknown, context: Record<string, unknown>) => Promise<unknown>;

// Invoke is REST JSON: POST /2015-03-31/functions/{FunctionName}/invocations, the payload as body.
export const invocationsRoute = /^POST \/2015-03-31\/functions\/([^/]+)\/invocations$/;

const projectRequire = createRequire(import.meta.url);

export function createLambdaInvokeHandler(deps: { state: SimulatorState; selfUrl: () => string }) {
  return async (call: AwsCall): Promise<Reply> => {
    const named = decodeURIComponent(invocationsRoute.exec(call.operation)?.[1] ?? '');
    // A name, a partial ARN or a full ARN; the function's name is what follows `function:`.
    const name = named.includes(':') ? (named.split(':function:')[1]?.split(':')[0] ?? named) : named;
    const arn = `arn:aws:lambda:${call.region}:${call.accountId}:function:${name}`;
    const deployed = deps.state.account(call.accountId).functions.get(name);
    if (!deployed) throw new AwsError('ResourceNotFoundException', `Function not found: ${arn}`, 404);
    const handler = load(deployed, call, deps.selfUrl());
    let event: unknown;
    try {
      event = call.body.length > 0 ? JSON.parse(call.body.toString('utf8')) : {};
    } catch {
      throw new AwsError('InvalidRequestContentException', 'Could not parse request body into json', 400);
    }
    const context = { functionName: name, invokedFunctionArn: arn, awsRequestId: randomUUID() };
    const headers = { 'content-type': 'application/json', 'x-amz-executed-version': '$LATEST' };
    try {
      const result = await handler(event, context);
      return { status: 200, headers, body: JSON.stringify(result ?? null) };
    } catch (error) {
      // A function that throws still answers 200; the header marks it, the body is the runtime's
      // error shape (Lambda API reference, Invoke: X-Amz-Function-Error).
      const e = error instanceof Error ? error : new Error(String(error));
      return {
        status: 200,
        headers: { ...headers, 'x-amz-function-error': 'Unhandled' },
        body: JSON.stringify({ errorType: e.name, errorMessage: e.message, trace: [] }),
      };
    }
  };
}

/** Evaluates the function's source with SDK clients bound to this account and region. */
function load(deployed: FunctionRecord, call: AwsCall, endpoint: string): Handler {
  const clientOptions = {
    region: call.region,
    endpoint,
    maxAttempts: 1,
    credentials: { accessKeyId: 'function-role', secretAccessKey: 'function-role' },
  };
  const require = (id: string): unknown => {
    const sdk = projectRequire(id) as Record<string, unknown>;
    if (!id.startsWith('@aws-sdk/client-')) return sdk;
    return new Proxy(sdk, {
      get(target, key) {
        const value = target[key as string];
        if (typeof key !== 'string' || !key.endsWith('Client') || typeof value !== 'function') return value;
        const Client = value as new (config: object) => Parameters<typeof withAccount>[0];
        return class extends (Client as new (config: object) => object) {
          constructor(config: object) {
            super({ ...config, ...clientOptions });
            withAccount(this as unknown as Parameters<typeof withAccount>[0], call.accountId);
          }
        };
      },
    });
  };
  const module = { exports: {} as { handler?: Handler } };
  const processView = { env: { AWS_REGION: call.region, ...deployed.environment } };
  const write = (...args: unknown[]) => {
    deployed.logs.push(args.map(String).join(' '));
  };
  const consoleView = { log: write, info: write, warn: write, error: write };
  new Function('exports', 'require', 'module', 'process', 'console', deployed.code)(
    module.exports,
    require,
    module,
    processView,
    consoleView,
  );
  const handler = module.exports.handler;
  if (typeof handler !== 'function')
    throw new AwsError('ServiceException', 'handler index.handler not found', 502);
  return handler;
}
