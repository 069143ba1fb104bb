import type { AwsCall } from './wire.js';

export interface CallRecord {
  /** Simulator clock time when the request arrived. */
  at: number;
  accountId: string;
  region: string;
  service: string;
  operation: string;
  /** The parsed request: the JSON body, or the flat Query form (`InstanceId.1`, ...). */
  params: Record<string, unknown>;
  /** HTTP status the caller received (fault answers included). */
  status: number;
}

export interface CallLog {
  record(call: AwsCall, at: number, status: number): void;
  list(accountId?: string, operation?: string): CallRecord[];
  reset(accountId?: string): void;
}

/** Bounded so a long sandbox session or a 10,000-instance run cannot grow it without limit. */
export function createCallLog(maxRecords = 100_000): CallLog {
  let records: CallRecord[] = [];
  return {
    record(call, at, status) {
      records.push({
        at,
        accountId: call.accountId,
        region: call.region,
        service: call.service,
        operation: call.operation,
        params: redact(call),
        status,
      });
      if (records.length > maxRecords) records = records.slice(-maxRecords);
    },
    list(accountId, operation) {
      return records.filter(
        (r) => (!accountId || r.accountId === accountId) && (!operation || r.operation === operation),
      );
    },
    reset(accountId) {
      records = accountId ? records.filter((r) => r.accountId !== accountId) : [];
    },
  };
}

/**
 * The log is readable over HTTP by the sandbox, and secrets never belong in logs (GUIDE §5), so a
 * SecureString's value is kept out of it; tests read the stored value back through GetParameter.
 */
function redact(call: AwsCall): Record<string, unknown> {
  if (call.protocol !== 'json') return Object.fromEntries(call.form);
  if (call.operation === 'PutParameter' && call.json.Type === 'SecureString' && 'Value' in call.json) {
    return { ...call.json, Value: '[redacted]' };
  }
  return call.json;
}
