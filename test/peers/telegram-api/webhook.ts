import { request, STATUS_CODES } from 'node:http';
import type { Update } from 'grammy/types';
import { seconds } from './message-methods.js';
import { isRecord, type Params } from './params.js';
import type { BotState, WebhookConfig } from './state.js';

export interface WebhookOptions {
  /** Delivery attempts per update before the fake gives up on it (the real server keeps trying for hours). */
  attempts?: number;
  retryDelayMs?: number;
  timeoutMs?: number;
}

interface PumpDeps {
  now(): number;
  changed(): void;
  /** Aborts when the fake closes: in-flight posts and retry waits end at once. */
  closing: AbortSignal;
  /** Runs a method the bot returned in its webhook response body, which Telegram honours. */
  executeReply(bot: BotState, method: string, params: Params): Promise<void>;
  options: WebhookOptions;
}

export interface WebhookPump {
  kick(bot: BotState): void;
  idle(): Promise<void>;
}

/**
 * Posts queued updates to each bot's webhook one at a time, so the bot sees them in order. A bot's
 * failure never escapes as a rejection: it is recorded as a delivery and as the webhook's last error.
 */
export function createWebhookPump(deps: PumpDeps): WebhookPump {
  const attempts = Math.max(1, deps.options.attempts ?? 3);
  const retryDelayMs = deps.options.retryDelayMs ?? 25;
  const timeoutMs = deps.options.timeoutMs ?? 5000;
  const running = new Map<BotState, Promise<void>>();

  async function drain(bot: BotState): Promise<void> {
    while (!deps.closing.aborted && bot.webhook && bot.queue.size > 0) {
      const [update] = bot.queue.take(1);
      if (!update) return;
      for (let attempt = 1; attempt <= attempts; attempt++) {
        const hook: WebhookConfig | undefined = bot.webhook;
        if (!hook || deps.closing.aborted) return;
        const delivered = await deliver(bot, update, attempt);
        if (delivered || attempt === attempts) {
          bot.queue.remove(update.update_id);
          break;
        }
        await sleep(retryDelayMs, deps.closing);
        // A webhook replaced or removed meanwhile takes over the update with a fresh count.
        if (bot.webhook !== hook) break;
      }
    }
  }

  async function deliver(bot: BotState, update: Update, attempt: number): Promise<boolean> {
    const hook = bot.webhook;
    if (!hook) return false;
    const at = deps.now();
    let status: number | undefined;
    let error: string | undefined;
    let reply = '';
    try {
      const answer = await post(hook, JSON.stringify(update), timeoutMs, deps.closing);
      status = answer.status;
      reply = answer.body;
      if (status < 200 || status >= 300) {
        error = `Wrong response from the webhook: ${status} ${STATUS_CODES[status] ?? ''}`.trim();
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      error = code === 'ECONNREFUSED' ? 'Connection refused' : (e as Error).message;
    }
    bot.deliveries.push({
      updateId: update.update_id,
      url: hook.url,
      attempt,
      at,
      secretSent: hook.secretToken !== undefined,
      ...(status !== undefined ? { status } : {}),
      ...(error !== undefined ? { error } : {}),
    });
    if (error !== undefined) bot.webhookError = { date: seconds(deps.now()), message: error };
    deps.changed();
    if (error !== undefined) return false;
    await runWebhookReply(bot, reply);
    return true;
  }

  async function runWebhookReply(bot: BotState, body: string): Promise<void> {
    let parsed: unknown;
    try {
      parsed = body ? JSON.parse(body) : undefined;
    } catch {
      return;
    }
    if (!isRecord(parsed) || typeof parsed.method !== 'string') return;
    const { method, ...params } = parsed;
    await deps.executeReply(bot, method, params).catch(() => undefined);
  }

  function kick(bot: BotState): void {
    if (running.has(bot) || deps.closing.aborted) return;
    const run = drain(bot)
      .catch(() => undefined)
      .finally(() => {
        running.delete(bot);
        // Something may have been queued after the loop's last look.
        if (bot.webhook && bot.queue.size > 0) kick(bot);
      });
    running.set(bot, run);
  }

  return {
    kick,
    async idle() {
      while (running.size > 0) await Promise.all(running.values());
    },
  };
}

function post(
  { url, secretToken }: WebhookConfig,
  body: string,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        // No keep-alive pool: every post stands alone, so nothing lingers after close().
        agent: false,
        signal,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...(secretToken !== undefined ? { 'x-telegram-bot-api-secret-token': secretToken } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error('Read timeout expired')));
    req.on('error', reject);
    req.end(body);
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done);
  });
}
