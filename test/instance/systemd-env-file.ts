/**
 * How systemd reads an EnvironmentFile=: a port of parse_env_file_internal() in systemd's
 * src/basic/env-file.c (v254+), so a test can check the values a unit really gets, not just the
 * bytes of the file. Comments start with # or ;, unquoted values lose trailing whitespace and take
 * backslash escapes, single quotes are literal, and in double quotes a backslash escapes only
 * `"\`$` (and a newline), keeping itself before anything else.
 */
export function parseSystemdEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  type State =
    | 'preKey'
    | 'key'
    | 'preValue'
    | 'value'
    | 'valueEscape'
    | 'single'
    | 'double'
    | 'doubleEscape'
    | 'comment'
    | 'commentEscape';
  let state: State = 'preKey';
  let key = '';
  let value = '';
  let lastValueWhitespace = -1;
  let lastKeyWhitespace = -1;
  const whitespace = ' \t\n\r';
  const push = () => {
    const k = lastKeyWhitespace >= 0 ? key.slice(0, lastKeyWhitespace) : key;
    out[k] = value;
    key = '';
    value = '';
  };
  for (const c of text) {
    switch (state) {
      case 'preKey':
        if (c === '#' || c === ';') state = 'comment';
        else if (!whitespace.includes(c)) {
          state = 'key';
          lastKeyWhitespace = -1;
          key += c;
        }
        break;
      case 'key':
        if (c === '\n' || c === '\r') {
          state = 'preKey';
          key = '';
        } else if (c === '=') {
          state = 'preValue';
          lastValueWhitespace = -1;
        } else {
          if (!whitespace.includes(c)) lastKeyWhitespace = -1;
          else if (lastKeyWhitespace < 0) lastKeyWhitespace = key.length;
          key += c;
        }
        break;
      case 'preValue':
        if (c === '\n' || c === '\r') {
          state = 'preKey';
          push();
        } else if (c === "'") state = 'single';
        else if (c === '"') state = 'double';
        else if (c === '\\') state = 'valueEscape';
        else if (!whitespace.includes(c)) {
          state = 'value';
          value += c;
        }
        break;
      case 'value':
        if (c === '\n' || c === '\r') {
          state = 'preKey';
          if (lastValueWhitespace >= 0) value = value.slice(0, lastValueWhitespace);
          push();
        } else if (c === '\\') {
          state = 'valueEscape';
          lastValueWhitespace = -1;
        } else {
          if (!whitespace.includes(c)) lastValueWhitespace = -1;
          else if (lastValueWhitespace < 0) lastValueWhitespace = value.length;
          value += c;
        }
        break;
      case 'valueEscape':
        state = 'value';
        if (c !== '\n' && c !== '\r') value += c;
        break;
      case 'single':
        if (c === "'") state = 'preValue';
        else value += c;
        break;
      case 'double':
        if (c === '"') state = 'preValue';
        else if (c === '\\') state = 'doubleEscape';
        else value += c;
        break;
      case 'doubleEscape':
        state = 'double';
        if ('"\\`$'.includes(c)) value += c;
        else if (c !== '\n') value += `\\${c}`;
        break;
      case 'comment':
        if (c === '\\') state = 'commentEscape';
        else if (c === '\n' || c === '\r') state = 'preKey';
        break;
      case 'commentEscape':
        state = c === '\n' || c === '\r' ? 'preKey' : 'comment';
        break;
    }
  }
  if (['preValue', 'value', 'valueEscape', 'single', 'double', 'doubleEscape'].includes(state)) {
    if (state === 'value' && lastValueWhitespace >= 0) value = value.slice(0, lastValueWhitespace);
    push();
  }
  return out;
}
