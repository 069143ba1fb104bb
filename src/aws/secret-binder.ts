import { InvokeCommand, type InvokeCommandOutput, type LambdaClient } from '@aws-sdk/client-lambda';
import { BindingRefusedError } from '../core/ports/secret-store.js';
import type { SecretKindName } from '../core/secret-kinds.js';

/**
 * Binding a user's parameters to an instance decides who may read them, so the service does not do
 * it itself: the stack's secret binder (infra/fleetbot.yaml, SecretBinderFunction, a Lambda with its
 * own role) checks that the instance is a live fleet instance launched from the fleet's template and
 * tagged with the parameters' user, then sets the InstanceArn tag. The service's role may not set
 * that tag at all, so a compromised service cannot bind a victim's secrets to an instance of another
 * user. The binder computes the ARN itself; the service only names the instance.
 */
export interface SecretBinder {
  bind(userId: string, kinds: readonly SecretKindName[], instanceId: string): Promise<void>;
}

/**
 * The binder itself failed (its own AWS calls throttled or refused); `awsCode` is its error type, so
 * the usual rules (src/core/aws-errors.ts) tell a wait from an answer. Failing to reach the binder at
 * all surfaces as the SDK's own error.
 */
export class BinderFailedError extends Error {
  constructor(readonly awsCode: string) {
    super(`secret binder failed (${awsCode})`);
    this.name = 'BinderFailedError';
  }
}

interface FunctionError {
  errorType?: string;
  errorMessage?: string;
}

export function createLambdaBinder(lambda: LambdaClient, functionName: string): SecretBinder {
  return {
    async bind(userId, kinds, instanceId) {
      const answer: InvokeCommandOutput = await lambda.send(
        new InvokeCommand({
          FunctionName: functionName,
          InvocationType: 'RequestResponse',
          Payload: Buffer.from(JSON.stringify({ userId, kinds, instanceId })),
        }),
      );
      // A function that threw still answers 200; X-Amz-Function-Error says so and the payload holds
      // {errorType, errorMessage} (Lambda API reference, Invoke: FunctionError).
      if (!answer.FunctionError) return;
      const failure = parse(answer.Payload);
      if (failure.errorType === 'BindingRefused')
        throw new BindingRefusedError(failure.errorMessage ?? 'no reason given');
      throw new BinderFailedError(failure.errorType ?? answer.FunctionError);
    },
  };
}

function parse(payload: Uint8Array | undefined): FunctionError {
  try {
    const value: unknown = JSON.parse(Buffer.from(payload ?? []).toString('utf8'));
    return value && typeof value === 'object' ? (value as FunctionError) : {};
  } catch {
    return {};
  }
}
