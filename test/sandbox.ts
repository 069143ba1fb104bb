import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runProcess } from '../src/main.js';
import { startAwsSimulator } from './peers/aws-simulator.js';
import { freePort } from './peers/free-port.js';
import { startMoto } from './peers/moto.js';
import { MotoSetupError } from './peers/moto-setup.js';

/**
 * `npm run sandbox`: the whole product on this machine, against local peers only. moto and the
 * AWS simulator start here; Redis is the local one; every role runs in this process, and the
 * terminal is the chat. Identities are fixed so the console shows real access rules:
 * Telegram user 42 is a member, Slack user U123 is an admin, anyone else is a guest.
 */
const logFile = join(tmpdir(), 'fleetbot-sandbox.log');
process.stdout.write(`Starting the local AWS emulator (logs: ${logFile})…\n`);

// Without moto_server this sets one up (or says what to install): one plain line, never a stack trace.
const moto = await startMoto().catch((error: unknown) => {
  if (!(error instanceof MotoSetupError)) throw error;
  process.stderr.write(`fleetbot: ${error.message}\n`);
  process.exit(1);
});
const simulator = await startAwsSimulator({ motoUrl: moto.url });
process.stdout.write(`AWS simulator on ${simulator.url} (${moto.label}).\n`);
const stopPeers = async () => {
  await simulator.close();
  await moto.stop();
};

// The SDK's default credential chain reads these; the emulator accepts any.
process.env.AWS_ACCESS_KEY_ID ??= 'sandbox';
process.env.AWS_SECRET_ACCESS_KEY ??= 'sandbox';

const dashboardListen = process.env.DASHBOARD_LISTEN ?? `127.0.0.1:${await freePort()}`;
process.stdout.write(
  `Dashboard on http://${dashboardListen}/jobs/ and /fleet (user ops, password sandbox-password).\n`,
);

const env = {
  REDIS_URL: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
  REDIS_PREFIX: 'fleetbot-sandbox',
  LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
  AWS_REGION: 'us-east-1',
  AWS_ENDPOINT_URL: simulator.url,
  TELEGRAM_ALLOWED_USER_IDS: '42',
  SLACK_ADMIN_USER_IDS: 'U123',
  DASHBOARD_LISTEN: dashboardListen,
  DASHBOARD_PASSWORD: 'sandbox-password',
  INSTANCE_AMI_ID: 'ami-12c6146b',
};

await runProcess(
  env,
  ['--role', 'all'],
  {
    console: { input: process.stdin, output: process.stdout, identity: { as: 'user', id: '42' } },
    logDestination: createWriteStream(logFile, { flags: 'a' }),
  },
  stopPeers,
);
