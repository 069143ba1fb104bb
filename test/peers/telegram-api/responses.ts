import type { ResponseParameters } from 'grammy/types';

/** The envelope every Bot API answer uses; on failure the HTTP status equals `error_code`. */
export type ApiResponse =
  | { ok: true; result: unknown; description?: string }
  | { ok: false; error_code: number; description: string; parameters?: ResponseParameters };

/** A failure the fake answers with, exactly as api.telegram.org would word it. */
export class BotApiError extends Error {
  constructor(
    readonly errorCode: number,
    readonly description: string,
    readonly parameters?: ResponseParameters,
  ) {
    super(description);
    this.name = 'BotApiError';
  }

  toResponse(): ApiResponse {
    return {
      ok: false,
      error_code: this.errorCode,
      description: this.description,
      ...(this.parameters ? { parameters: this.parameters } : {}),
    };
  }
}

/** A successful result that the real server decorates with a description (setWebhook, deleteWebhook). */
export class Described {
  constructor(
    readonly result: unknown,
    readonly description: string,
  ) {}
}

export const badRequest = (what: string) => new BotApiError(400, `Bad Request: ${what}`);
export const conflict = (what: string) => new BotApiError(409, `Conflict: ${what}`);
export const unauthorized = () => new BotApiError(401, 'Unauthorized');
export const notFound = (what?: string) => new BotApiError(404, what ? `Not Found: ${what}` : 'Not Found');
export const tooManyRequests = (retryAfter: number) =>
  new BotApiError(429, `Too Many Requests: retry after ${retryAfter}`, { retry_after: retryAfter });

const defaultDescriptions: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden: bot was blocked by the user',
  404: 'Not Found',
  409: 'Conflict',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
};

export function describeErrorCode(code: number): string {
  return defaultDescriptions[code] ?? `Error ${code}`;
}
