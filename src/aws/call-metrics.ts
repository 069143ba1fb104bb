import { isThrottlingAwsError } from '../core/aws-errors.js';
import type { Metrics } from '../metrics.js';

// biome-ignore lint/suspicious/noExplicitAny: the SDK's handler types are generic per client
type Handler = (args: any) => Promise<any>;

/** The slice of an SDK client's middleware stack this plugin uses (the types differ per client). */
interface MiddlewareStack {
  add(
    middleware: (next: Handler, context: { clientName?: string; commandName?: string }) => Handler,
    options: { step: 'initialize'; name: string },
  ): void;
}

/**
 * An SDK plugin counting calls by their final outcome: `client.middlewareStack.use(awsCallMetrics(m))`.
 * It sits in the `initialize` step, outside the retry middleware (which is in `finalizeRequest`),
 * so a call throttled once and then answered counts as one `ok`, and `throttled` means the SDK
 * gave up. Middleware in `deserialize` or `finalizeRequest` would see every attempt instead.
 */
export function awsCallMetrics(metrics: Metrics): { applyToStack(stack: MiddlewareStack): void } {
  return {
    applyToStack(stack) {
      stack.add(
        (next, context) => async (args: unknown) => {
          const service = (context.clientName ?? 'unknown').replace(/Client$/, '').toLowerCase();
          const operation = (context.commandName ?? 'unknown').replace(/Command$/, '');
          try {
            const result = await next(args);
            metrics.awsCall({ service, operation, outcome: 'ok' });
            return result;
          } catch (error) {
            metrics.awsCall({
              service,
              operation,
              outcome: isThrottlingAwsError(error) ? 'throttled' : 'error',
            });
            throw error;
          }
        },
        { step: 'initialize', name: 'fleetbotAwsCallMetrics' },
      );
    },
  };
}
