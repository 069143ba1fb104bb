import { type ChildProcess, spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from '../peers/free-port.js';

export interface PrivateRedis {
  redis: Redis;
  stop(): Promise<void>;
}

/**
 * A throwaway redis-server with its own settings (an eviction policy, a refused command), so a
 * test never changes the configuration of the Redis every other test file shares.
 */
export async function startPrivateRedis(args: string[]): Promise<PrivateRedis> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...args],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const redis = new Redis(`redis://127.0.0.1:${port}`, {
    // Commands wait in the offline queue while the server is still starting.
    maxRetriesPerRequest: null,
    retryStrategy: (times) => (times > 50 ? null : 100),
  });
  redis.on('error', () => {});
  await redis.ping();
  return {
    redis,
    async stop() {
      redis.disconnect();
      child.kill('SIGTERM');
      await exited;
    },
  };
}
