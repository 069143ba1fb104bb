/**
 * The reply API that commands and workers share. A message is plain text plus optional buttons;
 * each adapter renders it for its platform. A message sent now can be edited later from any
 * process that holds its MessageRef (that is how workers report progress in place).
 */

import type { IdentityPlatform } from './caller.js';
import type { BotSuggestion } from './managed-bots.js';

/**
 * Where a conversation happens: every identity platform, and the local console that stands in for
 * them. A list, so job payloads check it too (src/jobs/queues.ts).
 */
type Platforms = readonly (IdentityPlatform | 'console')[];
export const chatPlatforms = ['telegram', 'slack', 'console'] as const satisfies Platforms;
export type ChatPlatform = (typeof chatPlatforms)[number];

/** A button press is replayed as this command line, so it passes the same checks as typed text. */
export interface Button {
  label: string;
  command: string;
  style?: 'primary' | 'danger';
}

export interface OutgoingMessage {
  text: string;
  buttons?: Button[];
  /**
   * A button that lets the member create their assistant's bot in one tap (Telegram managed bots);
   * platforms without it show the text only.
   */
  createBot?: { label: string; suggestion: BotSuggestion };
}

/** The command menu a chat platform shows each person (Telegram's setMyCommands). */
export interface CommandMenus {
  /** This member sees the member commands in their private chat. */
  member(userId: string): Promise<void>;
  /** Back to the guest menu, after a membership ends. */
  guest(userId: string): Promise<void>;
}

/** Where a conversation happens: enough to post into it again later, from another process. */
export interface ChatAddress {
  platform: ChatPlatform;
  chatId: string;
  /** Needed by Slack to show a message to one person only. */
  userId?: string;
}

/** A message that can be edited; plain data so it can travel in job payloads. */
export interface MessageRef {
  platform: ChatPlatform;
  chatId: string;
  messageId: string;
}

/**
 * The platform could not take a message right now (rate limited, down, unreachable): the same call may
 * succeed later. Outboxes throw it for exactly those cases, so callers retry one kind of error only.
 */
export class ChatUnavailable extends Error {
  constructor(
    message: string,
    /** The platform's own Retry-After, when it gave one: no request may come sooner. */
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ChatUnavailable';
  }
}

/** One platform's way to post and edit; workers build these without running a bot. */
export interface Outbox {
  send(
    to: ChatAddress,
    message: OutgoingMessage,
    /** `thread`: posted as a reply to that message (a Slack thread, a Telegram reply). */
    options?: { private?: boolean; thread?: MessageRef },
  ): Promise<MessageRef | undefined>;
  edit(ref: MessageRef, message: OutgoingMessage): Promise<void>;
}

/** What a command gets to answer with; bound to the conversation it came from. */
export interface Reply {
  readonly address: ChatAddress;
  /** Posts a message; the ref is undefined for messages the platform does not let us edit. */
  send(message: OutgoingMessage | string): Promise<MessageRef | undefined>;
  /** Only the caller sees it, where the platform can do that (Slack ephemeral); in a DM that is every message. */
  whisper(message: OutgoingMessage | string): Promise<void>;
  edit(ref: MessageRef, message: OutgoingMessage | string): Promise<void>;
  /** Asks a yes/no question; pressing Confirm replays `command` through the dispatcher. */
  confirm(question: string, command: string, labels?: { confirm?: string; cancel?: string }): Promise<void>;
}

/** Telegram limits callback data to 64 bytes and Slack button values to 2000 characters. */
export const maxButtonCommandBytes = 64;

export function createReply(outbox: Outbox, address: ChatAddress): Reply {
  const asMessage = (m: OutgoingMessage | string): OutgoingMessage =>
    typeof m === 'string' ? { text: m } : m;
  return {
    address,
    send: (m) => outbox.send(address, asMessage(m)),
    whisper: async (m) => {
      await outbox.send(address, asMessage(m), { private: true });
    },
    edit: (ref, m) => outbox.edit(ref, asMessage(m)),
    confirm: async (question, command, labels = {}) => {
      if (Buffer.byteLength(command) > maxButtonCommandBytes)
        throw new Error(`button command longer than ${maxButtonCommandBytes} bytes`);
      await outbox.send(address, {
        text: question,
        buttons: [
          { label: labels.confirm ?? 'Confirm', command, style: 'danger' },
          { label: labels.cancel ?? 'Cancel', command: '/cancelled' },
        ],
      });
    },
  };
}

/** The message the caller sent, which the bot may remove (a pasted secret must not stay in the chat). */
export interface OriginalMessage {
  /** True once the message is gone; asking twice deletes once and answers the same. */
  delete(): Promise<boolean>;
}

export function deletable(remove: () => Promise<boolean>): OriginalMessage {
  let result: Promise<boolean> | undefined;
  return {
    delete() {
      result ??= remove().catch(() => false);
      return result;
    },
  };
}

/** For chats where there is nothing to delete (Slack slash commands are never posted to the channel). */
export const nothingToDelete: OriginalMessage = { delete: async () => true };
