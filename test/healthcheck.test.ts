import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config.js';
import {
  checkHeartbeat,
  clearHeartbeat,
  type HeartbeatBody,
  heartbeatProbes,
  probeTimeoutMs,
  staleAfterMs,
  startHeartbeat,
} from '../src/heartbeat.js';
import { freePort } from './peers/free-port.js';
import { capturedLogger } from './support/quiet-log.js';

let dir: string;
const servers: Server[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleetbot-heartbeat-'));
});
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let files = 0;
const heartbeatPath = () => join(dir, `heartbeat-${++files}.json`);

/** A real HTTP server on loopback answering every request with `status`. */
async function serve(status: number): Promise<number> {
  const server = createServer((_req, res) => res.writeHead(status).end());
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

async function writeHeartbeat(body: HeartbeatBody): Promise<string> {
  const path = heartbeatPath();
  await writeFile(path, JSON.stringify(body));
  return path;
}

const worker = (): HeartbeatBody => ({ pid: 1, roles: ['worker'], probes: [] });
const dashboardAt = (port: number): HeartbeatBody => ({
  pid: 1,
  roles: ['dashboard'],
  probes: [{ name: 'dashboard', url: `http://127.0.0.1:${port}/healthz`, needsOk: true }],
});
const slackAt = (port: number): HeartbeatBody => ({
  pid: 1,
  roles: ['bot'],
  probes: [{ name: 'slack receiver', url: `http://127.0.0.1:${port}/`, needsOk: false }],
});

const config = (hosts: { dashboard: string; slack: string; webhook: string }) =>
  ({
    roles: ['bot', 'dashboard'],
    dashboard: { host: hosts.dashboard, port: 8080 },
    slack: { host: hosts.slack, port: 3000 },
    telegram: { webhook: { host: hosts.webhook, port: 8443 } },
  }) as unknown as Pick<Config, 'roles' | 'dashboard' | 'slack' | 'telegram'>;

describe('the health check', () => {
  it('when the heartbeat key is not set, then it is unhealthy and says so', async () => {
    expect(await checkHeartbeat(undefined, Date.now())).toEqual({
      healthy: false,
      message: 'FLEETBOT_HEARTBEAT_FILE is not set, so there is no heartbeat to check',
    });
  });

  it('when there is no heartbeat file, then it is unhealthy: not started yet, or stopped', async () => {
    const path = heartbeatPath();
    expect(await checkHeartbeat(path, Date.now())).toEqual({
      healthy: false,
      message: `no heartbeat at ${path}: fleetbot has not started yet, or has stopped`,
    });
  });

  it('when the file is not a heartbeat, then it is unhealthy and names the file', async () => {
    const path = heartbeatPath();
    await writeFile(path, 'not json');
    expect(await checkHeartbeat(path, Date.now())).toEqual({
      healthy: false,
      message: `cannot read the heartbeat at ${path} (not a fleetbot heartbeat)`,
    });
  });

  it('when a worker (no server) has a fresh heartbeat, then it is healthy; once it is stale, then not', async () => {
    const path = await writeHeartbeat(worker());
    const written = (await stat(path)).mtimeMs;
    expect(await checkHeartbeat(path, written + staleAfterMs)).toEqual({
      healthy: true,
      message: 'fleetbot is alive (roles: worker)',
    });
    const stale = await checkHeartbeat(path, written + staleAfterMs + 1000);
    expect(stale.healthy).toBe(false);
    expect(stale.message).toBe(
      'the heartbeat is 46 s old (a running fleetbot rewrites it every 10 s): the process is stuck or gone',
    );
  });

  it('when the dashboard answers /healthz with 200, then it is healthy; with 503, then not', async () => {
    const up = await serve(200);
    expect(await checkHeartbeat(await writeHeartbeat(dashboardAt(up)), Date.now())).toEqual({
      healthy: true,
      message: 'fleetbot is alive (roles: dashboard); dashboard answered',
    });
    const failing = await serve(503);
    expect(await checkHeartbeat(await writeHeartbeat(dashboardAt(failing)), Date.now())).toEqual({
      healthy: false,
      message: `the dashboard answered 503 at http://127.0.0.1:${failing}/healthz`,
    });
  });

  it('when a chat receiver answers at all (404 to a GET), then it is healthy; when nothing listens, then not', async () => {
    const receiver = await serve(404);
    expect((await checkHeartbeat(await writeHeartbeat(slackAt(receiver)), Date.now())).healthy).toBe(true);
    const nobody = await freePort();
    expect(await checkHeartbeat(await writeHeartbeat(slackAt(nobody)), Date.now())).toEqual({
      healthy: false,
      message: `the slack receiver does not answer at http://127.0.0.1:${nobody}/ (ECONNREFUSED)`,
    });
  });

  it('when a server accepts but never answers, then the check gives up after its timeout and is unhealthy', async () => {
    const server = createServer(() => {});
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    expect(await checkHeartbeat(await writeHeartbeat(dashboardAt(port)), Date.now())).toEqual({
      healthy: false,
      message: `the dashboard does not answer at http://127.0.0.1:${port}/healthz (no answer within ${probeTimeoutMs / 1000} s)`,
    });
  });
});

const anyHost = { dashboard: '0.0.0.0', slack: '::', webhook: '::' };

describe('the heartbeat a started process writes', () => {
  it('when servers listen on any address, then the check asks them on loopback, at the ports bound', () => {
    expect(
      heartbeatProbes(config({ dashboard: '0.0.0.0', slack: '::', webhook: '10.0.0.5' }), {
        dashboard: 18080,
        slack: 13000,
        telegramWebhook: 18443,
      }),
    ).toEqual([
      { name: 'dashboard', url: 'http://127.0.0.1:18080/healthz', needsOk: true },
      { name: 'slack receiver', url: 'http://[::1]:13000/', needsOk: false },
      { name: 'telegram webhook', url: 'http://10.0.0.5:18443/', needsOk: false },
    ]);
  });

  it('when no server was bound (a worker, polling, Socket Mode), then it lists none', () => {
    expect(heartbeatProbes(config(anyHost), {})).toEqual([]);
  });

  it('when started, then it writes roles and servers, keeps rewriting the file, and removes it on stop', async () => {
    const path = heartbeatPath();
    const { log, lines } = capturedLogger();
    const writer = startHeartbeat(
      path,
      {
        config: config({ dashboard: '127.0.0.1', slack: '0.0.0.0', webhook: '::' }),
        ports: { dashboard: 18080 },
      },
      log,
      50,
    );
    await expect.poll(() => existsSync(path)).toBe(true);
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({
      pid: process.pid,
      roles: ['bot', 'dashboard'],
      probes: [{ name: 'dashboard', url: 'http://127.0.0.1:18080/healthz', needsOk: true }],
    });
    // Made old by hand: the next beat must bring it back to now.
    const old = new Date(Date.now() - 3_600_000);
    await utimes(path, old, old);
    await expect.poll(async () => (await stat(path)).mtimeMs > old.getTime() + 1000).toBe(true);
    await writer.stop();
    expect(existsSync(path)).toBe(false);
    expect(lines).toEqual([]);
  });

  it('when the file cannot be written, then it logs one warning however many beats fail', async () => {
    // A directory where the file should be: each beat writes its file aside, then fails to rename it over.
    const path = heartbeatPath();
    await mkdir(path);
    const aside = `${path}.${process.pid}.tmp`;
    const { log, lines } = capturedLogger();
    const writer = startHeartbeat(path, { config: config(anyHost), ports: {} }, log, 20);
    await expect.poll(() => lines.length).toBe(1);
    // Made old by hand: its next rewrite shows that later beats ran, and failed, too.
    const old = new Date(Date.now() - 3_600_000);
    await utimes(aside, old, old);
    await expect.poll(async () => (await stat(aside)).mtimeMs > old.getTime() + 1000).toBe(true);
    await writer.stop();
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] ?? '{}')).toMatchObject({
      msg: 'cannot write the heartbeat file; health checks will fail',
      path,
    });
  });

  it('when no path is given, then it writes nothing; clearing removes a heartbeat left by an earlier run', async () => {
    const { log } = capturedLogger();
    await startHeartbeat(undefined, { config: config(anyHost), ports: {} }, log).stop();
    const path = await writeHeartbeat(worker());
    clearHeartbeat(path);
    expect(existsSync(path)).toBe(false);
    clearHeartbeat(path);
    clearHeartbeat(undefined);
  });
});
