import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { type Caller, type RoleOf, roleLabels } from '../core/caller.js';
import {
  type Button,
  type ChatAddress,
  createReply,
  deletable,
  type Outbox,
  type OutgoingMessage,
} from '../core/chat.js';
import type { Dispatch } from './dispatch.js';

/**
 * A chat in the terminal, like Hubot's shell adapter. It impersonates a Telegram end user or a
 * Slack admin; roles still come from the access policy, so the console proves the real rules.
 */

export interface ConsoleIdentity {
  as: 'user' | 'admin';
  id: string;
}

export interface ConsoleOptions {
  input: Readable;
  output: Writable;
  roleOf: RoleOf;
  dispatch: Dispatch;
  identity: ConsoleIdentity;
}

export interface ConsoleAdapter {
  outbox: Outbox;
  /** Resolves when the input ends or the user types /quit. */
  closed: Promise<void>;
  close(): void;
}

const asCommand = /^\/as\s+(user|admin)\s+(\S+)\s*$/i;

export function createConsoleAdapter(options: ConsoleOptions): ConsoleAdapter {
  const { output, roleOf, dispatch } = options;
  let identity = options.identity;
  let nextMessageId = 1;
  let buttons: Button[] = [];
  const rl = createInterface({ input: options.input, output, terminal: false });

  const promptText = () => `${identity.as === 'user' ? 'telegram user' : 'slack admin'} ${identity.id}> `;
  const write = (text: string) => {
    output.write(`${text}\n`);
  };
  const show = (label: string, message: OutgoingMessage) => {
    write(`${label} ${message.text.replace(/\n/g, '\n    ')}`);
    buttons = message.buttons ?? [];
    if (buttons.length)
      write(`    ${buttons.map((b, i) => `[${i + 1}] ${b.label}`).join('  ')}  (type the number)`);
  };

  const outbox: Outbox = {
    async send(_to, message) {
      const messageId = String(nextMessageId++);
      show(`bot #${messageId}:`, message);
      return { platform: 'console', chatId: 'console', messageId };
    },
    async edit(ref, message) {
      show(`bot #${ref.messageId} (edited):`, message);
    },
  };

  const caller = async (): Promise<Caller> => {
    const platform = identity.as === 'user' ? 'telegram' : 'slack';
    return {
      platform,
      userId: identity.id,
      displayName: 'console',
      role: await roleOf({ platform, userId: identity.id, channelId: 'console' }),
      viaConsole: true,
    };
  };
  const address = (): ChatAddress => ({ platform: 'console', chatId: 'console', userId: identity.id });

  const handle = async (line: string) => {
    const text = line.trim();
    if (text === '') return;
    if (text === '/quit' || text === '/exit') {
      rl.close();
      return;
    }
    const switchTo = asCommand.exec(text);
    if (switchTo?.[1] && switchTo[2]) {
      identity = { as: switchTo[1].toLowerCase() as 'user' | 'admin', id: switchTo[2] };
      write(`now acting as ${promptText().slice(0, -2)} (role: ${roleLabels[(await caller()).role]})`);
      return;
    }
    if (text.startsWith('/as')) {
      write('usage: /as user <telegram id> | /as admin <slack user id>');
      return;
    }
    const pressed = /^\d+$/.test(text) ? buttons[Number(text) - 1] : undefined;
    if (pressed) buttons = [];
    await dispatch({
      caller: await caller(),
      text: pressed?.command ?? text,
      reply: createReply(outbox, address()),
      // A button press replays a command; only typed text is a message of the user's to delete.
      original: pressed
        ? undefined
        : deletable(async () => {
            write('(your message was deleted from the chat)');
            return true;
          }),
    });
  };

  // Lines are handled one at a time, in order, as a chat would deliver them.
  let queue = Promise.resolve();
  const closed = new Promise<void>((resolve) => {
    rl.on('line', (line) => {
      queue = queue
        .then(() => handle(line))
        .then(() => {
          output.write(promptText());
        });
    });
    rl.on('close', () => {
      void queue.then(() => resolve());
    });
  });
  write(
    'fleetbot console. /help lists commands; /as user <id> or /as admin <id> switches identity; /quit leaves.',
  );
  output.write(promptText());

  return { outbox, closed, close: () => rl.close() };
}
