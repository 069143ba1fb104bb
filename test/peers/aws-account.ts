import { randomInt } from 'node:crypto';

interface MiddlewareClient {
  middlewareStack: {
    add(
      // biome-ignore lint/suspicious/noExplicitAny: the SDK's middleware types differ per client
      middleware: (next: any) => (args: any) => Promise<any>,
      options: { step: 'build'; name?: string },
    ): void;
  };
}

/** A fresh 12-digit account id: moto (and the simulator) keep state per account, so tests never share it. */
export function testAccountId(): string {
  return String(randomInt(100_000_000_000, 999_999_999_999));
}

/** Sends every request of this SDK client as the given moto account. */
export function withAccount<C extends MiddlewareClient>(client: C, accountId: string): C {
  client.middlewareStack.add(
    (next) => async (args) => {
      args.request.headers['x-moto-account-id'] = accountId;
      return next(args);
    },
    { step: 'build', name: 'motoAccount' },
  );
  return client;
}

/** The environment that points a fleetbot process (or the AWS CLI) at moto or the simulator. */
export function awsEnv(endpoint: string) {
  return {
    AWS_REGION: 'us-east-1',
    AWS_ENDPOINT_URL: endpoint,
    AWS_ACCESS_KEY_ID: 'testing',
    AWS_SECRET_ACCESS_KEY: 'testing',
  };
}
