import { PassThrough } from 'node:stream';

/** A stream that collects what a process writes, with a wait for a line matching a pattern. */
export function captureOutput() {
  const stream = new PassThrough();
  let text = '';
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    for (const w of [...waiters]) {
      const m = text.match(w.pattern);
      if (m) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  return {
    stream,
    text: () => text,
    /** Resolves with the first match in everything written so far or later. */
    waitFor(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
      const m = text.match(pattern);
      if (m) return Promise.resolve(m);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for ${pattern}; output was:\n${text}`)),
          timeoutMs,
        );
        waiters.push({
          pattern,
          resolve: (match) => {
            clearTimeout(timer);
            resolve(match);
          },
        });
      });
    },
    /** Forgets what was written so far, so the next wait only sees new output. */
    clear() {
      text = '';
    },
  };
}
