import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../peers/free-port.js';
import { ownServerArgs } from '../peers/redis.js';

export interface PrivateRedis {
  redis: Redis;
  /** `redis://127.0.0.1:<port>`, for a fleetbot process under test. */
  url: string;
  /**
   * Stops the server as an operator or a supervisor would (SIGTERM: Redis flushes its AOF and
   * exits); the port and data directory stay reserved for `start()`.
   */
  shutdown(): Promise<void>;
  /** Starts the server again on the same port and data directory, so with `--appendonly yes` its data survive. */
  start(): Promise<void>;
  /** Stops the server for good and removes its data directory. */
  stop(): Promise<void>;
}

/**
 * A throwaway redis-server with its own settings (an eviction policy, a refused command, AOF), so a
 * test never changes the configuration of the Redis every other test file shares, and may stop and
 * restart it.
 */
export async function startPrivateRedis(args: string[]): Promise<PrivateRedis> {
  const port = await freePort();
  // Its own directory: with AOF on, Redis writes there rather than into the working tree.
  const dir = await mkdtemp(join(tmpdir(), 'fleetbot-redis-'));
  const url = `redis://127.0.0.1:${port}`;
  let server: { child: ChildProcess; exited: Promise<number | null> } | undefined;
  // Patient, and reconnecting for as long as the test keeps it: the server may be restarted under it.
  const redis = new Redis(url, { maxRetriesPerRequest: null, retryStrategy: () => 100 });
  redis.on('error', () => {});

  const start = async () => {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        ...ownServerArgs(dir),
        // Later settings win: a test may turn AOF on.
        ...args,
      ],
      { stdio: 'ignore' },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    server = { child, exited };
    // Commands wait in the offline queue while the server is still starting (or loading its AOF).
    let answered = false;
    await Promise.race([
      redis.ping().then(() => {
        answered = true;
      }),
      exited.then((code) => {
        if (!answered) throw new Error(`redis-server on port ${port} exited with ${code} before answering`);
      }),
    ]);
  };
  const shutdown = async () => {
    if (!server) return;
    const { child, exited } = server;
    server = undefined;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };

  try {
    await start();
  } catch (error) {
    redis.disconnect();
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    redis,
    url,
    shutdown,
    start,
    async stop() {
      redis.disconnect();
      await shutdown();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
