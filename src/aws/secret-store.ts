import type { LambdaClient } from '@aws-sdk/client-lambda';
import {
  AddTagsToResourceCommand,
  DeleteParameterCommand,
  type ParameterMetadata,
  PutParameterCommand,
  paginateDescribeParameters,
  RemoveTagsFromResourceCommand,
  type SSMClient,
} from '@aws-sdk/client-ssm';
import { awsErrorCode, isThrottlingAwsError } from '../core/aws-errors.js';
import { userParameterName, userParameterPath } from '../core/parameter-names.js';
import { type SecretStore, SecretStoreError, type StoredSecret } from '../core/ports/secret-store.js';
import { findKind, type SecretKindName } from '../core/secret-kinds.js';
import { createLambdaBinder, type SecretBinder } from './secret-binder.js';

export type { SecretStore, StoredSecret };

/** The store every role runs with: binding through the stack's binder when one is configured. */
export function openSecretStore(
  ssm: SSMClient,
  lambda: LambdaClient,
  settings: { parameterPrefix: string; kmsKeyId: string; secretBinderFunction?: string },
): SecretStore {
  const binderFunction = settings.secretBinderFunction;
  return createSecretStore(ssm, {
    prefix: settings.parameterPrefix,
    kmsKeyId: settings.kmsKeyId,
    binder: binderFunction ? createLambdaBinder(lambda, binderFunction) : undefined,
  });
}

export function createSecretStore(
  ssm: SSMClient,
  // Without a binder the store tags parameters itself: only for FLEETBOT_ENV=dev (src/config.ts),
  // where no stack's binder exists.
  options: { prefix: string; kmsKeyId: string; binder?: SecretBinder },
): SecretStore {
  return {
    async put(userId, kind, value) {
      const name = userParameterName(options.prefix, userId, kind);
      const put = await call(() =>
        ssm.send(
          new PutParameterCommand({
            Name: name,
            Value: value,
            Type: 'SecureString',
            KeyId: options.kmsKeyId,
            Overwrite: true,
            Tier: 'Standard',
            Description: `fleetbot ${kind} of Telegram user ${userId}`,
          }),
        ),
      );
      // SSM refuses Tags together with Overwrite, so tags are a second call.
      await call(() =>
        ssm.send(
          new AddTagsToResourceCommand({
            ResourceType: 'Parameter',
            ResourceId: name,
            Tags: [
              { Key: 'app', Value: 'fleetbot' },
              { Key: 'user', Value: userId },
              { Key: 'kind', Value: kind },
            ],
          }),
        ),
      );
      return { version: put.Version ?? 0 };
    },
    async list(userId) {
      const pages = paginateDescribeParameters(
        { client: ssm },
        {
          ParameterFilters: [
            { Key: 'Path', Option: 'OneLevel', Values: [userParameterPath(options.prefix, userId)] },
          ],
        },
      );
      // call() makes any error a SecretStoreError, so only the paged requests run inside it.
      const found = await call(async () => {
        const parameters: ParameterMetadata[] = [];
        for await (const page of pages) parameters.push(...(page.Parameters ?? []));
        return parameters;
      });
      const out: StoredSecret[] = [];
      for (const p of found) {
        const kind = findKind(p.Name?.split('/').pop() ?? '');
        if (kind)
          out.push({
            kind: kind.name as SecretKindName,
            lastChanged: p.LastModifiedDate,
            version: p.Version,
          });
      }
      return out;
    },
    async bindToInstance(userId, kinds, instanceArn) {
      if (options.binder) return options.binder.bind(userId, kinds, instanceIdOf(instanceArn));
      for (const kind of kinds)
        await call(() =>
          ssm.send(
            new AddTagsToResourceCommand({
              ResourceType: 'Parameter',
              ResourceId: userParameterName(options.prefix, userId, kind),
              Tags: [{ Key: 'InstanceArn', Value: instanceArn }],
            }),
          ),
        );
    },
    async unbindFromInstance(userId, kinds) {
      // Every kind is tried even when one fails, so one refusal leaves as few tags behind as it can.
      let failure: unknown;
      for (const kind of kinds) {
        await call(() =>
          ssm.send(
            new RemoveTagsFromResourceCommand({
              ResourceType: 'Parameter',
              ResourceId: userParameterName(options.prefix, userId, kind),
              TagKeys: ['InstanceArn'],
            }),
          ),
        ).catch((error: unknown) => {
          // A parameter forgotten in the meantime (/forget before /destroy) has nothing left to
          // unbind: RemoveTagsFromResource answers InvalidResourceId for a parameter that no longer
          // exists. The name is built by code with the right resource type, so that is all it can mean.
          if (!(error instanceof SecretStoreError && parameterGone.test(error.awsCode))) failure ??= error;
        });
      }
      if (failure) throw failure;
    },
    async remove(userId, kind) {
      try {
        await call(() =>
          ssm.send(new DeleteParameterCommand({ Name: userParameterName(options.prefix, userId, kind) })),
        );
        return true;
      } catch (error) {
        if (error instanceof SecretStoreError && error.awsCode === 'ParameterNotFound') return false;
        throw error;
      }
    },
  };
}

const parameterGone = /^(InvalidResourceId|ParameterNotFound)$|NotFound/;

async function call<T>(send: () => Promise<T>): Promise<T> {
  try {
    return await send();
  } catch (error) {
    const code = awsErrorCode(error);
    const reason = isThrottlingAwsError(error)
      ? 'throttled'
      : /AccessDenied|Unauthorized|KMS/i.test(code)
        ? 'denied'
        : 'unavailable';
    // The SDK error is dropped on purpose: some validation messages quote the request's value. Its
    // code stays in awsCode, which is how jobs tell a throttled call from a refused one.
    throw new SecretStoreError(reason, code);
  }
}

/** arn:<partition>:ec2:<region>:<account>:instance/<id> → <id>: the binder works out the ARN itself. */
function instanceIdOf(instanceArn: string): string {
  return instanceArn.slice(instanceArn.lastIndexOf('/') + 1);
}
