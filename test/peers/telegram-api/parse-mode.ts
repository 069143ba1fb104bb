import type { MessageEntity } from 'grammy/types';
import { badRequest } from './responses.js';

/**
 * Text as Telegram stores it: markup removed, formatting as entities, outer whitespace trimmed. Parsing
 * for real matters: unescaped `<` in HTML or `.` in MarkdownV2 is the classic production-only failure,
 * and a fake that echoed the raw string would hide it.
 */
export interface FormattedText {
  text: string;
  entities: MessageEntity[];
}

export function formatText(
  raw: string,
  parseMode: string | undefined,
  entities: MessageEntity[] | undefined,
): FormattedText {
  switch ((parseMode ?? '').toLowerCase()) {
    case '':
      return trim({ text: raw, entities: entities ?? [] });
    case 'html':
      return trim(parseHtml(raw));
    case 'markdownv2':
      return trim(parseMarkdownV2(raw));
    case 'markdown':
      return trim(parseMarkdown(raw));
    default:
      throw badRequest('unsupported parse_mode');
  }
}

/** Telegram's limits count characters, not UTF-16 units, so an emoji counts once. */
export function textLength(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

const parseError = (what: string) => badRequest(`can't parse entities: ${what}`);
const byteOffset = (raw: string, index: number) => Buffer.byteLength(raw.slice(0, index), 'utf8');

function entity(type: string, offset: number, length: number, extra: Record<string, unknown> = {}) {
  return { type, offset, length, ...extra } as MessageEntity;
}

function sorted(entities: MessageEntity[]): MessageEntity[] {
  return entities.sort((a, b) => a.offset - b.offset || b.length - a.length);
}

function trim({ text, entities }: FormattedText): FormattedText {
  const lead = /^\s*/.exec(text)?.[0].length ?? 0;
  const body = text.slice(lead);
  const trimmed = body.slice(0, body.length - (/\s*$/.exec(body)?.[0].length ?? 0));
  const kept: MessageEntity[] = [];
  for (const e of entities) {
    const start = Math.max(0, e.offset - lead);
    const end = Math.min(trimmed.length, e.offset + e.length - lead);
    if (end > start) kept.push({ ...e, offset: start, length: end - start });
  }
  return { text: trimmed, entities: kept };
}

// ---- HTML ------------------------------------------------------------------------------------------

const htmlTags: Record<string, string> = {
  b: 'bold',
  strong: 'bold',
  i: 'italic',
  em: 'italic',
  u: 'underline',
  ins: 'underline',
  s: 'strikethrough',
  strike: 'strikethrough',
  del: 'strikethrough',
  'tg-spoiler': 'spoiler',
  span: 'spoiler',
  a: 'text_link',
  code: 'code',
  pre: 'pre',
  blockquote: 'blockquote',
  'tg-emoji': 'custom_emoji',
};

interface OpenTag {
  tag: string;
  type: string;
  start: number;
  attrs: Record<string, string>;
}

function decodeEntityAt(raw: string, index: number): { char: string; length: number } | undefined {
  const match = /^&(?:#(\d{1,7})|#x([0-9a-fA-F]{1,6})|(lt|gt|amp|quot));/.exec(raw.slice(index, index + 12));
  if (!match) return undefined;
  const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"' };
  if (match[3]) return { char: named[match[3]] ?? '', length: match[0].length };
  const code = match[1] ? Number(match[1]) : Number.parseInt(match[2] ?? '', 16);
  if (code > 0x10ffff) return undefined;
  return { char: String.fromCodePoint(code), length: match[0].length };
}

function decodeAll(value: string): string {
  let out = '';
  for (let i = 0; i < value.length; ) {
    const decoded = value[i] === '&' ? decodeEntityAt(value, i) : undefined;
    out += decoded ? decoded.char : value[i];
    i += decoded ? decoded.length : 1;
  }
  return out;
}

function parseHtml(raw: string): FormattedText {
  let text = '';
  const entities: MessageEntity[] = [];
  const stack: OpenTag[] = [];
  let i = 0;
  while (i < raw.length) {
    const c = raw[i] as string;
    if (c === '&') {
      const decoded = decodeEntityAt(raw, i);
      text += decoded ? decoded.char : c;
      i += decoded ? decoded.length : 1;
      continue;
    }
    if (c !== '<') {
      text += c;
      i++;
      continue;
    }
    const at = byteOffset(raw, i);
    if (raw[i + 1] === '/') {
      const end = raw.indexOf('>', i);
      if (end < 0) throw parseError(`Unclosed end tag at byte offset ${at}`);
      const name = raw
        .slice(i + 2, end)
        .trim()
        .toLowerCase();
      const open = stack.pop();
      if (!open) throw parseError(`Unexpected end tag at byte offset ${at}`);
      if (open.tag !== name) {
        throw parseError(
          `Unmatched end tag at byte offset ${at}, expected "</${open.tag}>", found "</${name}>"`,
        );
      }
      closeHtmlTag(open, text.length, stack, entities);
      i = end + 1;
      continue;
    }
    let j = i + 1;
    while (j < raw.length && /[A-Za-z0-9-]/.test(raw[j] as string)) j++;
    const name = raw.slice(i + 1, j).toLowerCase();
    const type = htmlTags[name];
    if (!type) throw parseError(`Unsupported start tag "${name}" at byte offset ${at}`);
    const attrs: Record<string, string> = {};
    for (;;) {
      while (j < raw.length && /\s/.test(raw[j] as string)) j++;
      if (j >= raw.length) throw parseError(`Unclosed start tag at byte offset ${at}`);
      if (raw[j] === '>') {
        j++;
        break;
      }
      let k = j;
      while (k < raw.length && /[A-Za-z0-9_-]/.test(raw[k] as string)) k++;
      const attr = raw.slice(j, k).toLowerCase();
      if (!attr) throw parseError(`Unclosed start tag at byte offset ${at}`);
      j = k;
      while (/\s/.test(raw[j] ?? '')) j++;
      if (raw[j] !== '=') {
        // A bare attribute, such as `expandable` on a blockquote.
        attrs[attr] = '';
        continue;
      }
      j++;
      while (/\s/.test(raw[j] ?? '')) j++;
      const quote = raw[j];
      let value: string;
      if (quote === '"' || quote === "'") {
        const endQuote = raw.indexOf(quote, j + 1);
        if (endQuote < 0) throw parseError(`Unclosed start tag at byte offset ${at}`);
        value = raw.slice(j + 1, endQuote);
        j = endQuote + 1;
      } else {
        k = j;
        while (k < raw.length && !/[\s>]/.test(raw[k] as string)) k++;
        value = raw.slice(j, k);
        j = k;
      }
      attrs[attr] = decodeAll(value);
    }
    if (name === 'span' && attrs.class !== 'tg-spoiler') {
      throw parseError(`Tag "span" must have class "tg-spoiler" at byte offset ${at}`);
    }
    stack.push({ tag: name, type, start: text.length, attrs });
    i = j;
  }
  const unclosed = stack.at(-1);
  if (unclosed) throw parseError(`Can't find end tag corresponding to start tag "${unclosed.tag}"`);
  return { text, entities: sorted(entities) };
}

function closeHtmlTag(open: OpenTag, end: number, stack: OpenTag[], entities: MessageEntity[]): void {
  const parent = stack.at(-1);
  const language = /^language-(.+)$/.exec(open.attrs.class ?? '')?.[1];
  if (open.tag === 'code' && parent?.tag === 'pre' && parent.start === open.start && language) {
    // <pre><code class="language-x"> is one pre entity with a language, not two entities.
    parent.attrs.language = language;
    return;
  }
  const length = end - open.start;
  if (length <= 0) return;
  switch (open.type) {
    case 'text_link':
      if (open.attrs.href) entities.push(entity('text_link', open.start, length, { url: open.attrs.href }));
      return;
    case 'pre':
      entities.push(
        entity('pre', open.start, length, open.attrs.language ? { language: open.attrs.language } : {}),
      );
      return;
    case 'blockquote':
      entities.push(
        entity('expandable' in open.attrs ? 'expandable_blockquote' : 'blockquote', open.start, length),
      );
      return;
    case 'custom_emoji':
      if (open.attrs['emoji-id']) {
        entities.push(
          entity('custom_emoji', open.start, length, { custom_emoji_id: open.attrs['emoji-id'] }),
        );
      }
      return;
    default:
      entities.push(entity(open.type, open.start, length));
  }
}

// ---- MarkdownV2 ------------------------------------------------------------------------------------

const v2Reserved = '_*[]()~`>#+-=|{}.!';
const v2Names: Record<string, string> = {
  bold: 'Bold',
  italic: 'Italic',
  underline: 'Underline',
  strikethrough: 'Strikethrough',
  spoiler: 'Spoiler',
  code: 'Code',
  pre: 'Pre',
  text_link: 'TextUrl',
  custom_emoji: 'CustomEmoji',
};

interface OpenMark {
  type: string;
  start: number;
  rawIndex: number;
  extra: Record<string, unknown>;
}

function parseMarkdownV2(raw: string): FormattedText {
  let text = '';
  const entities: MessageEntity[] = [];
  const stack: OpenMark[] = [];
  let quoteStart: number | undefined;
  const reserved = (c: string) =>
    parseError(`Character '${c}' is reserved and must be escaped with the preceding '\\'`);
  const close = (open: OpenMark) => {
    if (text.length > open.start)
      entities.push(entity(open.type, open.start, text.length - open.start, open.extra));
  };
  const toggle = (type: string, at: number) => {
    const top = stack.at(-1);
    if (top?.type === type) close(stack.pop() as OpenMark);
    else stack.push({ type, start: text.length, rawIndex: at, extra: {} });
  };
  let i = 0;
  while (i < raw.length) {
    const c = raw[i] as string;
    if (c === '\\' && i + 1 < raw.length) {
      const next = raw.charCodeAt(i + 1);
      if (next >= 1 && next <= 126) {
        text += raw[i + 1];
        i += 2;
        continue;
      }
    }
    const top = stack.at(-1);
    if (top?.type === 'pre' || top?.type === 'code') {
      const fence = top.type === 'pre' ? '```' : '`';
      if (raw.startsWith(fence, i)) {
        close(stack.pop() as OpenMark);
        i += fence.length;
      } else {
        text += c;
        i++;
      }
      continue;
    }
    if (c === '>' && (i === 0 || raw[i - 1] === '\n')) {
      quoteStart ??= text.length;
      i++;
      continue;
    }
    if (c === '\n') {
      text += c;
      i++;
      if (quoteStart !== undefined && raw[i] !== '>') {
        entities.push(entity('blockquote', quoteStart, text.length - quoteStart));
        quoteStart = undefined;
      }
      continue;
    }
    if (!v2Reserved.includes(c)) {
      text += c;
      i++;
      continue;
    }
    switch (c) {
      case '*':
        toggle('bold', i);
        i++;
        break;
      case '~':
        toggle('strikethrough', i);
        i++;
        break;
      case '_':
        if (raw[i + 1] === '_') {
          toggle('underline', i);
          i += 2;
        } else {
          toggle('italic', i);
          i++;
        }
        break;
      case '|':
        if (raw[i + 1] !== '|') throw reserved(c);
        toggle('spoiler', i);
        i += 2;
        break;
      case '`': {
        if (!raw.startsWith('```', i)) {
          stack.push({ type: 'code', start: text.length, rawIndex: i, extra: {} });
          i++;
          break;
        }
        const newline = raw.indexOf('\n', i + 3);
        const fenceEnd = raw.indexOf('```', i + 3);
        const extra: Record<string, unknown> = {};
        let skip = 3;
        if (newline >= 0 && (fenceEnd < 0 || newline < fenceEnd)) {
          const firstLine = raw.slice(i + 3, newline);
          if (!/\s/.test(firstLine)) {
            if (firstLine) extra.language = firstLine;
            skip = newline - i + 1;
          }
        }
        stack.push({ type: 'pre', start: text.length, rawIndex: i, extra });
        i += skip;
        break;
      }
      case '[':
        stack.push({ type: 'text_link', start: text.length, rawIndex: i, extra: {} });
        i++;
        break;
      case '!':
        if (raw[i + 1] !== '[') throw reserved(c);
        stack.push({ type: 'custom_emoji', start: text.length, rawIndex: i, extra: {} });
        i += 2;
        break;
      case ']': {
        const open = stack.at(-1);
        if (open?.type !== 'text_link' && open?.type !== 'custom_emoji') throw reserved(c);
        stack.pop();
        i++;
        let url = '';
        if (raw[i] === '(') {
          const urlAt = byteOffset(raw, i);
          let closed = false;
          for (i++; i < raw.length; i++) {
            if (raw[i] === '\\' && i + 1 < raw.length) {
              url += raw[++i];
            } else if (raw[i] === ')') {
              closed = true;
              i++;
              break;
            } else {
              url += raw[i];
            }
          }
          if (!closed) throw parseError(`Can't find end of a URL at byte offset ${urlAt}`);
        }
        if (open.type === 'custom_emoji') {
          const id = /^tg:\/\/emoji\?id=(\d+)$/.exec(url)?.[1];
          if (!id) throw parseError(`Custom emoji entity must contain a tg://emoji URL`);
          close({ ...open, extra: { custom_emoji_id: id } });
        } else if (url) {
          close({ ...open, extra: { url } });
        }
        break;
      }
      default:
        throw reserved(c);
    }
  }
  if (quoteStart !== undefined) entities.push(entity('blockquote', quoteStart, text.length - quoteStart));
  const unclosed = stack.at(-1);
  if (unclosed) {
    throw parseError(
      `Can't find end of ${v2Names[unclosed.type]} entity at byte offset ${byteOffset(raw, unclosed.rawIndex)}`,
    );
  }
  return { text, entities: sorted(entities.filter((e) => e.length > 0)) };
}

// ---- legacy Markdown -------------------------------------------------------------------------------

const legacyTypes: Record<string, string> = { '*': 'bold', _: 'italic', '`': 'code', '```': 'pre' };

function parseMarkdown(raw: string): FormattedText {
  let text = '';
  const entities: MessageEntity[] = [];
  let i = 0;
  while (i < raw.length) {
    const c = raw[i] as string;
    if (c === '\\' && '_*`['.includes(raw[i + 1] ?? '\0')) {
      text += raw[i + 1];
      i += 2;
      continue;
    }
    if (!'_*`['.includes(c)) {
      text += c;
      i++;
      continue;
    }
    const unclosed = () =>
      parseError(`Can't find end of the entity starting at byte offset ${byteOffset(raw, i)}`);
    if (c === '[') {
      const labelEnd = raw.indexOf(']', i + 1);
      if (labelEnd < 0) throw unclosed();
      const label = raw.slice(i + 1, labelEnd);
      let next = labelEnd + 1;
      let url = '';
      if (raw[next] === '(') {
        const urlEnd = raw.indexOf(')', next);
        if (urlEnd < 0) throw unclosed();
        url = raw.slice(next + 1, urlEnd);
        next = urlEnd + 1;
      }
      if (url && label) entities.push(entity('text_link', text.length, label.length, { url }));
      text += label;
      i = next;
      continue;
    }
    const fence = raw.startsWith('```', i) ? '```' : c;
    const end = raw.indexOf(fence, i + fence.length);
    if (end < 0) throw unclosed();
    let content = raw.slice(i + fence.length, end);
    const extra: Record<string, unknown> = {};
    const newline = content.indexOf('\n');
    if (fence === '```' && newline >= 0 && !/\s/.test(content.slice(0, newline))) {
      if (newline > 0) extra.language = content.slice(0, newline);
      content = content.slice(newline + 1);
    }
    if (content) entities.push(entity(legacyTypes[fence] ?? 'code', text.length, content.length, extra));
    text += content;
    i = end + fence.length;
  }
  return { text, entities: sorted(entities) };
}
