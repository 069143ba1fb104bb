import type { SecretKind } from '../../core/secret-kinds.js';

/** `unverified` means the check could not run; the reason is safe to show. */
export type LiveCheckResult = { ok: true } | { ok: false; reason: string } | { unverified: string };

export interface LiveChecks {
  check(kind: SecretKind, value: string): Promise<LiveCheckResult>;
}

export interface LiveCheckOptions {
  telegramApiRoot: string;
  /** Our own bot's id: its token must never become a user's assistant token. */
  ownBotId?: number;
  /** OpenAI-compatible API base (e.g. https://api.openai.com); no check without it. */
  openAiBaseUrl?: string;
  timeoutMs?: number;
}

/**
 * Asks the issuing service whether a secret works before it is stored. The secret travels in the
 * request, so no error from these calls is ever logged or shown: only status codes are used.
 */
export function createLiveChecks(options: LiveCheckOptions): LiveChecks {
  const timeoutMs = options.timeoutMs ?? 5000;
  const get = async (url: string, headers: Record<string, string> = {}) => {
    try {
      const res = await fetch(url, { headers, signal: AbortSignal.timeout(timeoutMs) });
      return { status: res.status, body: (await res.json().catch(() => undefined)) as unknown };
    } catch {
      return undefined;
    }
  };
  return {
    async check(kind, value) {
      if (kind.liveCheck === 'telegram-getme') {
        const res = await get(`${options.telegramApiRoot}/bot${value}/getMe`);
        if (!res) return { unverified: 'Telegram could not be reached to check it' };
        if (res.status === 401 || res.status === 404)
          return { ok: false, reason: 'Telegram does not accept this token' };
        const me = (res.body as { result?: { id?: number; is_bot?: boolean } } | undefined)?.result;
        if (res.status !== 200 || !me) return { unverified: `Telegram answered ${res.status}` };
        if (me.is_bot !== true) return { ok: false, reason: 'this token does not belong to a bot' };
        if (options.ownBotId !== undefined && me.id === options.ownBotId)
          return { ok: false, reason: "this is fleetbot's own token, not your assistant's" };
        return { ok: true };
      }
      if (kind.liveCheck === 'openai-models') {
        if (!options.openAiBaseUrl) return { unverified: 'no OpenAI API is configured to check it against' };
        const res = await get(`${options.openAiBaseUrl.replace(/\/$/, '')}/v1/models`, {
          authorization: `Bearer ${value}`,
        });
        if (!res) return { unverified: 'the OpenAI API could not be reached to check it' };
        if (res.status === 401 || res.status === 403)
          return { ok: false, reason: 'OpenAI does not accept this key' };
        if (res.status !== 200) return { unverified: `the OpenAI API answered ${res.status}` };
        return { ok: true };
      }
      return { ok: true };
    },
  };
}
