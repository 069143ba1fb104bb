import { mkdir } from 'node:fs/promises';
import type { EC2Client } from '@aws-sdk/client-ec2';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createAwsProbe } from '../../src/aws/probe.js';
import { type HttpServer, startHttp } from '../../src/http/server.js';
import { queueNames } from '../../src/jobs/queues.js';
import { dropPrefix, testRedis, uniquePrefix } from '../peers/redis.js';
import { audit, instances, motoEc2, password, user, xss } from './fixtures.js';

const artifacts = new URL('../../test-artifacts/', import.meta.url);
const prefix = uniquePrefix('browser');
let redis: Redis;
let ec2: EC2Client;
let ops: Queue;
let server: HttpServer;
let browser: Browser;
let base: string;
let deployJobId: string;

beforeAll(async () => {
  redis = testRedis();
  ec2 = motoEc2(inject('motoUrl'));
  ops = new Queue(queueNames.ops, { connection: redis, prefix });
  const deploy = await ops.add('deploy', { requestedBy: 'U123', version: '1.4.0', targets: 'ring:early' });
  deployJobId = deploy.id ?? '';
  const worker = new Worker(queueNames.ops, async () => ({ instances: 3 }), { connection: redis, prefix });
  await new Promise<void>((resolve) => worker.once('completed', () => resolve()));
  await worker.close();
  // Added after the worker stopped, so it stays waiting and shows on the fleet page too.
  await ops.add(xss, { requestedBy: 'U666' });

  server = await startHttp({
    host: '127.0.0.1',
    port: 0,
    user,
    password,
    redis,
    prefix,
    probeAws: createAwsProbe(ec2),
    listInstances: async () => instances,
    recentAudit: async () => audit,
  });
  base = `http://127.0.0.1:${server.port}`;
  // launch() gives every run a fresh temporary profile and removes it on close.
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  await mkdir(artifacts, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await ops?.close();
  if (redis) {
    await dropPrefix(redis, prefix);
    redis.disconnect();
  }
  ec2?.destroy();
});

/** A page that records every dialog (an executed `alert`) and every CSP complaint. */
async function operatorPage(): Promise<{ page: Page; dialogs: string[]; cspViolations: string[] }> {
  const context = await browser.newContext({ httpCredentials: { username: user, password } });
  const page = await context.newPage();
  const dialogs: string[] = [];
  const cspViolations: string[] = [];
  page.on('dialog', (dialog) => {
    dialogs.push(dialog.message());
    void dialog.dismiss();
  });
  page.on('console', (message) => {
    if (/Content.Security.Policy/i.test(message.text()) && !message.text().includes('fonts.googleapis.com'))
      cspViolations.push(message.text());
  });
  return { page, dialogs, cspViolations };
}

describe('the dashboard in a browser', () => {
  it('when a visitor has no credentials, then the job dashboard answers 401', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const statuses: number[] = [];
    page.on('response', (r) => statuses.push(r.status()));
    // Headless Chromium has nobody to ask for a password, so the navigation itself fails.
    const failure = await page.goto(`${base}/jobs/`).then(
      () => 'loaded',
      (e: Error) => e.message,
    );
    expect(statuses).toEqual([401]);
    expect(failure).toContain('ERR_INVALID_AUTH_CREDENTIALS');
    // From an open page, nothing behind auth answers a script without credentials either.
    const open = await context.newPage();
    await open.goto(`${base}/healthz`);
    const answers = await open.evaluate(async () =>
      Promise.all(
        ['/jobs/api/queues', '/fleet', '/metrics'].map(
          async (p) => (await fetch(p, { credentials: 'omit' })).status,
        ),
      ),
    );
    expect(answers).toEqual([401, 401, 401]);
    await context.close();
  });

  it('when an operator signs in, then bull-board lists the queues and the finished job', async () => {
    const { page, dialogs, cspViolations } = await operatorPage();
    await page.goto(`${base}/jobs/`);
    for (const name of Object.values(queueNames))
      await expect
        .poll(() => page.getByText(name, { exact: true }).count(), { timeout: 8000 })
        .toBeGreaterThan(0);

    await page.goto(`${base}/jobs/queue/${queueNames.ops}?status=completed`);
    await page.getByText('deploy', { exact: true }).first().waitFor({ timeout: 8000 });
    expect(await page.getByText(`#${deployJobId}`).count()).toBeGreaterThan(0);
    await page.screenshot({ path: new URL('dashboard.png', artifacts).pathname, fullPage: true });

    await page.goto(`${base}/jobs/queue/${queueNames.ops}?status=waiting`);
    await page.getByText(xss, { exact: true }).first().waitFor({ timeout: 8000 });
    expect(await page.locator('img[src="x"]').count()).toBe(0);
    expect(dialogs).toEqual([]);
    expect(cspViolations).toEqual([]);
  });

  it('when an operator opens the fleet page, then instances, jobs and audit show and hostile text stays text', async () => {
    const { page, dialogs, cspViolations } = await operatorPage();
    const res = await page.goto(`${base}/fleet`);
    expect(res?.status()).toBe(200);
    await page.getByRole('heading', { name: 'Instances (3)' }).waitFor();
    const rows = page.locator('tr');
    await expect.poll(() => rows.filter({ hasText: 'i-0123456789abcdef2' }).count()).toBe(1);
    expect(await rows.filter({ hasText: 'rollout-abc12345' }).textContent()).toContain('allowed');
    expect(await rows.filter({ hasText: 'denied: admin only' }).count()).toBe(1);
    // The hostile job name and the hostile audit argument are both visible as text and inert.
    expect(await rows.filter({ hasText: xss }).count()).toBe(2);
    expect(await page.locator('img').count()).toBe(0);
    await page.screenshot({ path: new URL('fleet.png', artifacts).pathname, fullPage: true });
    expect(dialogs).toEqual([]);
    expect(cspViolations).toEqual([]);
  });
});
