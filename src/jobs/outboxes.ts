import type { ChatPlatform, MessageRef, Outbox, OutgoingMessage } from '../core/chat.js';

export type Outboxes = Partial<Record<ChatPlatform, Outbox>>;

/** Answers a message on whichever platform it lives, in its thread. */
export async function replyInThread(
  outboxes: Outboxes,
  ref: MessageRef,
  message: OutgoingMessage,
): Promise<MessageRef | undefined> {
  const outbox = outboxes[ref.platform];
  if (!outbox) throw new Error(`no ${ref.platform} outbox configured in this worker`);
  return outbox.send({ platform: ref.platform, chatId: ref.chatId }, message, { thread: ref });
}

/** Edits a message on whichever platform it lives; a worker may serve several chats at once. */
export async function editMessage(
  outboxes: Outboxes,
  ref: MessageRef,
  message: OutgoingMessage,
): Promise<void> {
  const outbox = outboxes[ref.platform];
  if (!outbox) throw new Error(`no ${ref.platform} outbox configured in this worker`);
  await outbox.edit(ref, message);
}
