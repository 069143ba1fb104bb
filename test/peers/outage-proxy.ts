import { connect, createServer, type Server, type Socket } from 'node:net';
import { freePort } from './free-port.js';

/**
 * A TCP proxy in front of a peer (the fake Slack or Telegram API) that can take it away the way a real
 * outage does: `error` answers every request with HTTP 503, `refused` stops listening (connection
 * refused), `up` forwards again. Going down cuts the connections already open, as a crashed
 * service would. Every connection attempt while down is recorded, so a test can see how often a client tried.
 */
export interface OutageProxy {
  url: string;
  port: number;
  mode(): OutageMode;
  set(mode: OutageMode): Promise<void>;
  /** Connections refused or answered 503, with the time each arrived (refused ones cannot be seen). */
  attemptsWhileDown(): number[];
  close(): Promise<void>;
}

export type OutageMode = 'up' | 'error' | 'refused';

const serviceUnavailable =
  'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nService Unavailable';

export async function startOutageProxy(targetPort: number): Promise<OutageProxy> {
  const port = await freePort();
  let mode: OutageMode = 'up';
  const open = new Set<Socket>();
  const attempts: number[] = [];

  const track = (socket: Socket) => {
    open.add(socket);
    socket.on('close', () => open.delete(socket));
    socket.on('error', () => socket.destroy());
  };

  const server: Server = createServer((client) => {
    track(client);
    if (mode === 'error') {
      attempts.push(Date.now());
      // Answer once the request has started arriving, so the client reads a response, not a reset.
      client.once('data', () => client.end(serviceUnavailable));
      return;
    }
    const upstream = connect(targetPort, '127.0.0.1');
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });

  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  const cutAll = () => {
    for (const socket of open) socket.destroy();
  };
  const stopListening = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      cutAll();
    });

  await listen();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    mode: () => mode,
    async set(next) {
      if (next === mode) return;
      const wasListening = mode !== 'refused';
      mode = next;
      if (next === 'refused') {
        if (wasListening) await stopListening();
        return;
      }
      // Down with 503s or back up: connections from before the change end, as with a restarted service.
      cutAll();
      if (!wasListening) await listen();
    },
    attemptsWhileDown: () => [...attempts],
    async close() {
      if (mode !== 'refused') await stopListening();
    },
  };
}
