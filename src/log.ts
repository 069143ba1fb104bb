import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

/**
 * Structured JSON logs. Code never hands a secret to the logger; these rules are the second line of
 * defence if a config object, request or error message slips in: fields by name, then any value
 * shaped like a Telegram bot token or an `sk-` key, wherever it sits.
 */
export const redactedPaths = [
  '*.token',
  '*.botToken',
  '*.appToken',
  '*.signingSecret',
  '*.secret',
  '*.password',
  '*.value',
  '*.authorization',
  '*.response_url',
  '*.responseUrl',
  'token',
  'secret',
  'password',
  'value',
  'authorization',
  'response_url',
  'config',
  'req.headers.authorization',
  'req.headers["x-telegram-bot-api-secret-token"]',
  'req.headers["x-slack-signature"]',
];

// A bot token sits right after "/bot" in Bot API URLs, where \b finds no word boundary.
const secretShaped =
  /(?<!\d)\d{5,16}:[A-Za-z0-9_-]{30,}|\bsk-[A-Za-z0-9_-]{16,}|xox[abpr]-[A-Za-z0-9-]{10,}|xapp-[A-Za-z0-9-]{10,}/g;

export function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return value.replace(secretShaped, '[redacted]');
  // An error's message and stack are not enumerable: serialized first, or it would be logged as {}.
  if (value instanceof Error) return scrub(pino.stdSerializers.err(value), depth + 1);
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, scrub(v, depth + 1)]));
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { app: 'fleetbot' },
      redact: { paths: redactedPaths, censor: '[redacted]' },
      serializers: {
        err: (err: unknown) => scrub(err instanceof Error ? pino.stdSerializers.err(err) : err),
      },
      formatters: { log: (object) => scrub(object) as Record<string, unknown> },
      hooks: {
        // The message string itself (and any interpolation arguments) gets the same pass.
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? (scrub(a) as string) : a)) as never);
        },
      },
    },
    destination,
  );
}
