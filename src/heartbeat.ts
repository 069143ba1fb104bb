import { rmSync } from 'node:fs';
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import type { Running } from './main.js';

/**
 * How a container's health check learns whether this process is alive.
 *
 * The check (src/healthcheck.ts) runs as a process of its own. It cannot see the `--role` flag on our
 * command line, nor which ports this process bound, and only the dashboard serves a health endpoint:
 * bot and worker serve nothing a probe could ask. So this process says it itself: once started it
 * writes a heartbeat file (where FLEETBOT_HEARTBEAT_FILE says; the image sets it) naming its roles and
 * the HTTP servers it runs, and rewrites it every few seconds. A fresh file shows the event loop turns;
 * the check then also asks each server listed there. This needs no server in the worker and no role
 * setting kept in step with the command line.
 */

export const heartbeatEnvKey = 'FLEETBOT_HEARTBEAT_FILE';
/** How often a running process rewrites its heartbeat. */
export const beatMs = 10_000;
/**
 * A heartbeat older than this means the event loop is stuck (or the process is gone): four beats
 * missed, so a machine busy for a few seconds is not reported dead.
 */
export const staleAfterMs = 45_000;
/** Each server asked gets this long to answer; the image gives the whole check 10 s. */
export const probeTimeoutMs = 4000;

export interface Probe {
  /** What answers there, for the check's message: dashboard, slack receiver, telegram webhook. */
  name: string;
  url: string;
  /** The dashboard's /healthz must answer 200; the chat receivers answer any status to a GET. */
  needsOk: boolean;
}

export interface HeartbeatBody {
  pid: number;
  roles: readonly string[];
  probes: Probe[];
}

/** Where a server bound to `host` is reached from inside the same machine or container. */
function localUrl(host: string, port: number, path: string): string {
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}${path}`;
}

/** The HTTP servers a started process runs, at the ports it actually bound. */
export function heartbeatProbes(
  config: Pick<Config, 'dashboard' | 'slack' | 'telegram'>,
  ports: Running['ports'],
): Probe[] {
  const probes: Probe[] = [];
  if (ports.dashboard !== undefined)
    probes.push({
      name: 'dashboard',
      url: localUrl(config.dashboard.host, ports.dashboard, '/healthz'),
      needsOk: true,
    });
  if (ports.slack !== undefined && config.slack)
    probes.push({
      name: 'slack receiver',
      url: localUrl(config.slack.host, ports.slack, '/'),
      needsOk: false,
    });
  if (ports.telegramWebhook !== undefined && config.telegram?.webhook)
    probes.push({
      name: 'telegram webhook',
      url: localUrl(config.telegram.webhook.host, ports.telegramWebhook, '/'),
      needsOk: false,
    });
  return probes;
}

/**
 * Removes a heartbeat left by an earlier run (a restarted container keeps its files), so it does not
 * vouch for this process while it is still starting. Without a path, there is nothing to do.
 */
export function clearHeartbeat(path: string | undefined): void {
  if (path) rmSync(path, { force: true });
}

export interface HeartbeatWriter {
  /** Stops beating and removes the file: a process shutting down is no longer healthy. */
  stop(): Promise<void>;
}

/** Starts beating for a started process; does nothing without a path (tests, a developer's machine). */
export function startHeartbeat(
  path: string | undefined,
  running: { config: Pick<Config, 'roles' | 'dashboard' | 'slack' | 'telegram'>; ports: Running['ports'] },
  log: Logger,
  everyMs = beatMs,
): HeartbeatWriter {
  if (!path) return { stop: async () => {} };
  const body: HeartbeatBody = {
    pid: process.pid,
    roles: running.config.roles,
    probes: heartbeatProbes(running.config, running.ports),
  };
  const text = `${JSON.stringify(body)}\n`;
  // Written aside and renamed over, so the check never reads half a file.
  const aside = `${path}.${process.pid}.tmp`;
  let warned = false;
  const beat = () =>
    writeFile(aside, text)
      .then(() => rename(aside, path))
      .catch((err: unknown) => {
        // The check will say there is no heartbeat; this line says why. Once, not every 10 s.
        if (!warned)
          log.warn({ err: String(err), path }, 'cannot write the heartbeat file; health checks will fail');
        warned = true;
      });
  let writing = beat();
  const timer = setInterval(() => {
    writing = writing.then(beat);
  }, everyMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await writing;
      // Nothing to say if it cannot go: a stopping process is gone once it exits either way.
      await rm(path, { force: true }).catch(() => {});
    },
  };
}

export interface HealthResult {
  healthy: boolean;
  /** One line for `docker inspect` (Docker keeps the check's output). */
  message: string;
}

/** Reads the heartbeat at `path` and asks every server it lists. Never throws. */
export async function checkHeartbeat(path: string | undefined, now: number): Promise<HealthResult> {
  const unhealthy = (message: string): HealthResult => ({ healthy: false, message });
  if (!path) return unhealthy(`${heartbeatEnvKey} is not set, so there is no heartbeat to check`);
  let body: HeartbeatBody;
  try {
    const ageMs = now - (await stat(path)).mtimeMs;
    if (ageMs > staleAfterMs)
      return unhealthy(
        `the heartbeat is ${Math.round(ageMs / 1000)} s old (a running fleetbot rewrites it every ${beatMs / 1000} s): the process is stuck or gone`,
      );
    body = JSON.parse(await readFile(path, 'utf8')) as HeartbeatBody;
    if (!Array.isArray(body.probes) || !Array.isArray(body.roles)) throw new Error('not a heartbeat');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      return unhealthy(`no heartbeat at ${path}: fleetbot has not started yet, or has stopped`);
    return unhealthy(`cannot read the heartbeat at ${path} (${code ?? 'not a fleetbot heartbeat'})`);
  }
  const failures = (await Promise.all(body.probes.map(ask))).filter((f) => f !== undefined);
  if (failures.length > 0) return unhealthy(failures.join('; '));
  const answered = body.probes.length > 0 ? `; ${body.probes.map((p) => p.name).join(', ')} answered` : '';
  return { healthy: true, message: `fleetbot is alive (roles: ${body.roles.join(', ')})${answered}` };
}

/** Undefined when the server answered as it should; otherwise what went wrong, in a few words. */
async function ask(probe: Probe): Promise<string | undefined> {
  try {
    const response = await fetch(probe.url, {
      signal: AbortSignal.timeout(probeTimeoutMs),
      redirect: 'manual',
    });
    await response.body?.cancel();
    if (probe.needsOk && response.status !== 200)
      return `the ${probe.name} answered ${response.status} at ${probe.url}`;
    return undefined;
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code;
    const reason =
      error instanceof Error && error.name === 'TimeoutError'
        ? `no answer within ${probeTimeoutMs / 1000} s`
        : (cause ?? 'no answer');
    return `the ${probe.name} does not answer at ${probe.url} (${reason})`;
  }
}
