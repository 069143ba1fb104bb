import { Writable } from 'node:stream';
import { createLogger, type Logger } from '../../src/log.js';

/** A real logger whose lines are kept for assertions instead of printed. */
export function capturedLogger(): { log: Logger; lines: string[]; destination: Writable } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { log: createLogger('debug', destination), lines, destination };
}
