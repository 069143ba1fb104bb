import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineCommand } from '../../src/bot/command.js';
import { createDispatcher } from '../../src/bot/dispatch.js';
import { createRegistry } from '../../src/bot/registry.js';
import type { Caller } from '../../src/core/caller.js';
import { createReply } from '../../src/core/chat.js';
import { UserError } from '../../src/core/errors.js';
import { createLogger } from '../../src/log.js';
import { memoryOutbox } from '../support/memory-chat.js';

const ran: string[] = [];
const commands = [
  defineCommand<unknown, z.ZodType<number, string>>({
    name: 'double',
    summary: 'doubles',
    usage: '<n>',
    args: z
      .string()
      .trim()
      .regex(/^\d{1,3}$/, 'Give a number from 0 to 999.')
      .transform(Number),
    requires: 'admin',
    async run({ args, reply }) {
      ran.push(`double ${args}`);
      await reply.send(String(args * 2));
    },
  }),
  defineCommand<unknown, z.ZodString>({
    name: 'mine',
    summary: 'user thing',
    args: z.string(),
    requires: 'user',
    async run() {
      throw new UserError('You have no instance yet.');
    },
  }),
  defineCommand<unknown, z.ZodString>({
    name: 'broken',
    summary: 'fails',
    args: z.string(),
    requires: 'anyone',
    async run() {
      throw new Error('internal detail /fleetbot/users/42 CANARY');
    },
  }),
];

const logLines: string[] = [];
const log = createLogger(
  'info',
  new Writable({
    write(chunk, _enc, done) {
      logLines.push(String(chunk));
      done();
    },
  }),
);
const dispatch = createDispatcher(createRegistry(commands), {}, log);
const admin: Caller = { platform: 'slack', userId: 'U1', displayName: 'ann', role: 'admin' };
const user: Caller = { platform: 'telegram', userId: '42', displayName: 'bo', role: 'user' };

async function say(caller: Caller, text: string) {
  const outbox = memoryOutbox();
  const outcome = await dispatch({
    caller,
    text,
    reply: createReply(outbox, { platform: 'slack', chatId: 'C1' }),
  });
  return { outcome, sent: outbox.sent };
}

describe('dispatcher', () => {
  it('when an allowed caller sends valid arguments, then the command runs with parsed input', async () => {
    const { outcome, sent } = await say(admin, '/double 21');
    expect(outcome).toBe('ran');
    expect(sent).toEqual([{ message: { text: '42' }, private: false }]);
  });

  it('when an update carries its platform id, then every log line about it names the update and the caller', async () => {
    logLines.length = 0;
    await dispatch({
      caller: admin,
      text: '/double 4',
      reply: createReply(memoryOutbox(), { platform: 'slack', chatId: 'C1' }),
      updateId: 'T0123.456',
    });
    const line = JSON.parse(logLines.find((l) => l.includes('command ran')) ?? '{}');
    expect(line).toMatchObject({ update: 'T0123.456', platform: 'slack', user: 'U1', command: 'double' });
  });

  it('when the command name carries a bot suffix and capitals, then it still matches', async () => {
    expect((await say(admin, '/Double@fleet_bot 2')).outcome).toBe('ran');
  });

  it('when the arguments are bad, then the caller gets the reason and usage privately and nothing runs', async () => {
    ran.length = 0;
    const { outcome, sent } = await say(admin, '/double 1;rm -rf /');
    expect(outcome).toBe('invalid');
    expect(ran).toEqual([]);
    expect(sent).toEqual([
      { message: { text: 'Give a number from 0 to 999.\nUsage: /double <n>' }, private: true },
    ]);
  });

  it('when a user runs an admin command, then it is refused by name', async () => {
    const { outcome, sent } = await say(user, '/double 2');
    expect(outcome).toBe('denied');
    expect(sent[0]?.message.text).toBe('/double is for fleet admins only.');
  });

  it('when an admin runs a user command, then the answer says where it belongs', async () => {
    const { sent } = await say(admin, '/mine');
    expect(sent[0]?.message.text).toBe('/mine is for end users in the Telegram bot.');
  });

  it('when the command is unknown, then the answer points to /help', async () => {
    const { outcome, sent } = await say(user, '/nope');
    expect(outcome).toBe('unknown');
    expect(sent[0]?.message.text).toBe("I don't know /nope. Send /help to see what you can do.");
  });

  it('when the text is not a command and no text handler is set, then the caller is pointed to /help', async () => {
    expect(await say(user, 'hello')).toEqual({
      outcome: 'text',
      sent: [
        { message: { text: 'I understand commands. Send /help to see what you can do.' }, private: false },
      ],
    });
  });

  it('when a command throws a UserError, then its message is shown', async () => {
    const { outcome, sent } = await say(user, '/mine');
    expect(outcome).toBe('failed');
    expect(sent[0]?.message.text).toBe('You have no instance yet.');
  });

  it('when a command crashes, then the caller gets a reference and no internals', async () => {
    const { outcome, sent } = await say(user, '/broken');
    expect(outcome).toBe('failed');
    const text = sent[0]?.message.text ?? '';
    expect(text).toMatch(/^Something went wrong running \/broken \(ref [0-9a-f]{8}\)/);
    expect(text).not.toContain('CANARY');
    const ref = /ref ([0-9a-f]{8})/.exec(text)?.[1];
    expect(logLines.some((l) => l.includes(`"ref":"${ref}"`))).toBe(true);
  });
});

describe('registry', () => {
  it('when two commands share a name, then building the registry fails', () => {
    expect(() => createRegistry([commands[0], commands[0]] as never)).toThrow(
      'command registered twice: double',
    );
  });
});
