import type { Dispatch } from '../../src/bot/dispatch.js';
import type { Caller } from '../../src/core/caller.js';
import { createReply, type Outbox, type OutgoingMessage } from '../../src/core/chat.js';

export interface Sent {
  message: OutgoingMessage;
  private: boolean;
}

/** An outbox that keeps what it is given, for driving the dispatcher without a chat platform. */
export function memoryOutbox(): Outbox & { sent: Sent[] } {
  const sent: Sent[] = [];
  return {
    sent,
    async send(to, message, options) {
      sent.push({ message, private: Boolean(options?.private) });
      return { platform: to.platform, chatId: to.chatId, messageId: String(sent.length) };
    },
    async edit() {},
  };
}

/** Runs one command line as `caller` and returns every text the bot answered. */
export async function runAs(dispatch: Dispatch, caller: Caller, text: string): Promise<string[]> {
  const outbox = memoryOutbox();
  await dispatch({
    caller,
    text,
    reply: createReply(outbox, { platform: 'slack', chatId: 'CTEST', userId: caller.userId }),
  });
  return outbox.sent.map((s) => s.message.text);
}
