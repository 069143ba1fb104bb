import { describe, expect, it } from 'vitest';
import { capturedLogger } from '../support/quiet-log.js';

const botToken = `123456789:${'CANARYtok'.repeat(4)}`;
const apiKey = `sk-proj-CANARY${'k'.repeat(24)}`;
const slackToken = 'xoxb-CANARY-1234567890-abcdef';

describe('log redaction', () => {
  it('when secrets reach the logger by field name, by value, in a message, in an error or in a child, then none is written', () => {
    const { log, lines } = capturedLogger();
    log.info({ token: botToken, config: { slack: { botToken: slackToken } } }, 'by name');
    log.info({ note: `user pasted ${apiKey} here`, nested: { deeper: [{ text: botToken }] } }, 'by value');
    log.warn(`message with ${apiKey} inside`);
    log.error({ err: new Error(`request to /bot${botToken}/getMe failed`) }, 'error');
    log
      .child({ update: 42, authorization: `Bearer ${apiKey}` })
      .info({ response_url: 'https://hooks.slack.com/x' }, 'child');
    log.info(
      {
        req: {
          headers: { authorization: `Bearer ${apiKey}`, 'x-telegram-bot-api-secret-token': 'CANARYhdr' },
        },
      },
      'request',
    );
    const out = lines.join('');
    expect(lines).toHaveLength(6);
    expect(out).not.toContain('CANARY');
    expect(out).not.toContain('hooks.slack.com');
    expect(out).toContain('[redacted]');
    expect(out).toContain('"msg":"message with [redacted] inside"');
    expect(out).toContain('"update":42');
  });

  it('when nothing secret is logged, then values pass through unchanged', () => {
    const { log, lines } = capturedLogger();
    log.info(
      { user: '5001', kind: 'openai-api-key', fingerprint: '…a1b2', instanceId: 'i-0123456789abcdef0' },
      'stored',
    );
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({
      user: '5001',
      kind: 'openai-api-key',
      fingerprint: '…a1b2',
      instanceId: 'i-0123456789abcdef0',
      msg: 'stored',
    });
  });
});
