import type { SecretKindName } from '../secret-kinds.js';

/** Parameter Store as members' secrets. src/aws/secret-store.ts implements it. */

export interface StoredSecret {
  kind: SecretKindName;
  lastChanged?: Date;
  version?: number;
}

/** Why a call to Parameter Store failed, in terms the bot can explain; never the SDK's message. */
export class SecretStoreError extends Error {
  constructor(
    readonly reason: 'throttled' | 'denied' | 'unavailable',
    readonly awsCode: string,
  ) {
    super(`parameter store call failed: ${reason} (${awsCode})`);
    this.name = 'SecretStoreError';
  }
}

/**
 * Write-only access to users' secrets. There is deliberately no get: the bot's own role may
 * write and tag parameters but never read a value back.
 */
export interface SecretStore {
  put(userId: string, kind: SecretKindName, value: string): Promise<{ version: number }>;
  list(userId: string): Promise<StoredSecret[]>;
  remove(userId: string, kind: SecretKindName): Promise<boolean>;
  /** Tags the parameters with the instance ARN: the instance role may read only parameters tagged with its own. */
  bindToInstance(userId: string, kinds: readonly SecretKindName[], instanceArn: string): Promise<void>;
  unbindFromInstance(userId: string, kinds: readonly SecretKindName[]): Promise<void>;
}

/** The binder looked at the instance and said no; the reason names what did not match. */
export class BindingRefusedError extends Error {
  constructor(readonly reason: string) {
    super(`secret binding refused: ${reason}`);
    this.name = 'BindingRefusedError';
  }
}
