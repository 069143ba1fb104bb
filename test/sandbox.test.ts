import { spawn } from 'node:child_process';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { captureOutput } from './support/lines.js';

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm run sandbox', () => {
  it('when a newcomer runs it, then both identities get /help and /whoami, and Ctrl-C leaves no process behind', async () => {
    const input = new PassThrough();
    const output = captureOutput();
    // Its own process group, so the test can deliver Ctrl-C to the whole group as a terminal does.
    const child = spawn('npm', ['run', '--silent', 'sandbox'], {
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, LOG_LEVEL: 'info' },
    });
    input.pipe(child.stdin);
    child.stdout.pipe(output.stream);
    child.stderr.pipe(output.stream);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      await output.waitFor(/telegram user 42> /, 30_000);
      input.write('/help\n');
      await output.waitFor(/\/secrets - list which secrets you have stored/);
      input.write('/whoami\n');
      await output.waitFor(/You are Telegram user 42 \(console\), role: member/);
      input.write('/as admin U123\n/help\n');
      await output.waitFor(/\/ping - check that a worker picks up jobs/);
      input.write('/whoami\n');
      await output.waitFor(/You are Slack user U123 \(console\), role: fleet admin/);
      // The dashboard it announced is up and asks for the announced credentials.
      const dashboard = /Dashboard on (http:\/\/[\d.:]+)\/jobs\//.exec(output.text())?.[1] ?? '';
      expect((await fetch(`${dashboard}/fleet`)).status).toBe(401);
      const fleet = await fetch(`${dashboard}/fleet`, {
        headers: { authorization: `Basic ${btoa('ops:sandbox-password')}` },
      });
      expect(fleet.status).toBe(200);
      const motoPid = Number(/moto_server pid (\d+)/.exec(output.text())?.[1]);
      expect(processExists(motoPid)).toBe(true);

      process.kill(-(child.pid ?? 0), 'SIGINT');
      await exited;
      // Every process the sandbox started (npm, node, moto_server) is gone, not just the one we spawned.
      // npm exits first; the rest of its group shuts down within the workers' grace, not instantly.
      await expect.poll(() => processExists(-(child.pid ?? 0)), { timeout: 15_000 }).toBe(false);
      expect(processExists(motoPid)).toBe(false);
    } finally {
      if (processExists(-(child.pid ?? 0))) process.kill(-(child.pid ?? 0), 'SIGKILL');
    }
  }, 60_000);
});
