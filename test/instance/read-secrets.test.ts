import { execFile, spawnSync } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DeleteParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readSecretsScript } from '../../src/aws/userdata.js';
import { looksSecret } from '../../src/core/secret-kinds.js';
import { type MotoServer, startMoto } from '../peers/moto.js';
import { shellcheck } from '../support/tools.js';
import { parseSystemdEnvFile } from './systemd-env-file.js';

/*
 * src/aws/instance/read-secrets.sh for real: SecureString parameters in moto, read by the real aws CLI
 * (pointed at moto through AWS_ENDPOINT_URL), written to scratch directories standing in for
 * /run/fleetbot and /etc/fleetbot. The service user is whoever runs the tests, so chown works unprivileged.
 */

const helper = fileURLToPath(new URL('../../src/aws/instance/read-secrets.sh', import.meta.url));
const region = 'us-east-1';
const owner = userInfo().username;
// A fresh prefix per run: this file's own moto, but names that could never meet another run's.
const prefix = `rs${Math.random().toString(36).slice(2, 10)}`;
const param = (kind: string) => `/${prefix}/users/4242/${kind}`;
const token = `4242424242:${'T'.repeat(30)}tok42`;
const apiKey = `sk-proj-${'k'.repeat(40)}`;

let moto: MotoServer;
let ssm: SSMClient;
const scratch: string[] = [];

beforeAll(async () => {
  moto = await startMoto();
  ssm = new SSMClient({
    region,
    endpoint: moto.url,
    maxAttempts: 1,
    credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
  });
}, 120_000);
afterAll(async () => {
  ssm?.destroy();
  await moto?.stop();
});
afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function put(kind: string, value: string): Promise<void> {
  await ssm.send(
    new PutParameterCommand({ Name: param(kind), Value: value, Type: 'SecureString', Overwrite: true }),
  );
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

interface Box {
  dir: string;
  runDir: string;
  envFile: string;
  statusFile: string;
  run(extraEnv?: Record<string, string>, bin?: string): Promise<Run>;
}

/** Config naming the given secrets, scratch dirs, and a way to run the helper there. */
function box(secrets: [string, string][], retry = '10 20 50'): Box {
  const dir = mkdtempSync(join(tmpdir(), 'fleetbot-secrets-'));
  scratch.push(dir);
  const configDir = join(dir, 'etc');
  const runDir = join(dir, 'run', 'fleetbot');
  mkdirSync(configDir);
  writeFileSync(
    join(configDir, 'assistant.secrets.conf'),
    [
      '# names only',
      `owner ${owner}`,
      `retry ${retry}`,
      ...secrets.map(([key, name]) => `secret ${key} ${name}`),
      '',
    ].join('\n'),
  );
  return {
    dir,
    runDir,
    envFile: join(runDir, 'assistant.env'),
    statusFile: join(runDir, 'assistant.status'),
    run: (extraEnv = {}, bin) =>
      new Promise((resolve) => {
        const env: Record<string, string> = {
          PATH: `${bin ? `${bin}:` : ''}${process.env.PATH ?? '/usr/bin:/bin'}`,
          HOME: dir,
          AWS_ENDPOINT_URL: moto.url,
          AWS_REGION: region,
          AWS_ACCESS_KEY_ID: 'testing',
          AWS_SECRET_ACCESS_KEY: 'testing',
          AWS_EC2_METADATA_DISABLED: 'true',
          FLEETBOT_CONFIG_DIR: configDir,
          FLEETBOT_RUN_DIR: runDir,
          // The scratch dir is on disk; production's /run/fleetbot is a tmpfs, which the helper insists on.
          FLEETBOT_RUN_DIR_ON_DISK_OK: '1',
          ...extraEnv,
        };
        // The aws CLI here comes through pyenv's shims, which need their own variables.
        for (const [k, v] of Object.entries(process.env)) if (k.startsWith('PYENV') && v) env[k] = v;
        execFile('bash', [helper, 'assistant'], { env, timeout: 120_000 }, (error, stdout, stderr) => {
          const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
          resolve({ code, stdout, stderr });
        });
      }),
  };
}

const both: [string, string][] = [
  ['TELEGRAM_BOT_TOKEN', param('telegram-bot-token')],
  ['OPENAI_API_KEY', param('openai-api-key')],
];

// Every run starts the aws CLI (a Python process) once per secret: seconds each on a loaded machine.
describe('fleetbot-secrets against moto with the real aws CLI', { timeout: 240_000 }, () => {
  it('when both parameters are stored, then the env file holds both values verbatim, mode 600, and the status says ok', async () => {
    await put('telegram-bot-token', token);
    await put('openai-api-key', apiKey);
    const b = box(both);
    const result = await b.run();
    expect(result, result.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/^fleetbot-secrets: ok \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/);

    expect(readFileSync(b.envFile, 'utf8')).toBe(
      `TELEGRAM_BOT_TOKEN="${token}"\nOPENAI_API_KEY="${apiKey}"\n`,
    );
    expect(parseSystemdEnvFile(readFileSync(b.envFile, 'utf8'))).toEqual({
      TELEGRAM_BOT_TOKEN: token,
      OPENAI_API_KEY: apiKey,
    });
    expect(statSync(b.envFile).mode & 0o777).toBe(0o600);
    expect(statSync(b.envFile).uid).toBe(userInfo().uid);
    expect(readFileSync(b.statusFile, 'utf8')).toBe(result.stdout);
    expect(statSync(b.statusFile).mode & 0o777).toBe(0o644);
    // No temp file, aws error file or status temp left behind.
    expect(readdirSync(b.runDir).sort()).toEqual(['assistant.env', 'assistant.status']);
  });

  it('when a value holds quotes, backslashes, $ and spaces, then systemd reads it back byte for byte', async () => {
    const odd = ` sp'ace "dq" \\back\\ $HOME \`id\` #not-a-comment; x\\ `;
    await put('odd-value', odd);
    const b = box([['ODD_VALUE', param('odd-value')]]);
    const result = await b.run();
    expect(result.code, result.stderr).toBe(0);
    expect(parseSystemdEnvFile(readFileSync(b.envFile, 'utf8'))).toEqual({ ODD_VALUE: odd });
  });

  it('when a value is rotated in Parameter Store, then the next start writes the new value', async () => {
    await put('telegram-bot-token', token);
    await put('openai-api-key', apiKey);
    const b = box(both);
    expect((await b.run()).code).toBe(0);
    const rotated = `sk-proj-${'r'.repeat(40)}`;
    await put('openai-api-key', rotated);
    const again = await b.run();
    expect(again.code, again.stderr).toBe(0);
    expect(parseSystemdEnvFile(readFileSync(b.envFile, 'utf8'))).toEqual({
      TELEGRAM_BOT_TOKEN: token,
      OPENAI_API_KEY: rotated,
    });
    expect(readFileSync(b.envFile, 'utf8')).not.toContain(apiKey);
  });

  it('when a parameter was deleted, then the helper fails with one clear line, the stale env file is gone and the status holds the line', async () => {
    await put('telegram-bot-token', token);
    await put('openai-api-key', apiKey);
    const b = box(both);
    expect((await b.run()).code).toBe(0);
    expect(existsSync(b.envFile)).toBe(true);

    await ssm.send(new DeleteParameterCommand({ Name: param('openai-api-key') }));
    const result = await b.run();
    const line = 'fleetbot-secrets: failed: openai-api-key is not stored (ParameterNotFound)';
    expect(result).toEqual({ code: 1, stdout: '', stderr: `${line}\n` });
    expect(existsSync(b.envFile)).toBe(false);
    expect(readFileSync(b.statusFile, 'utf8')).toBe(`${line}\n`);
    expect(readdirSync(b.runDir)).toEqual(['assistant.status']);
  });

  it('when a value spans several lines, then it is refused without being printed and no env file appears', async () => {
    await put('telegram-bot-token', `${token}\nOPENAI_API_KEY=sk-injected-${'i'.repeat(20)}`);
    const b = box([both[0] as [string, string]]);
    const result = await b.run();
    const line = 'fleetbot-secrets: failed: telegram-bot-token spans several lines; refused';
    expect(result).toEqual({ code: 1, stdout: '', stderr: `${line}\n` });
    expect(readFileSync(b.statusFile, 'utf8')).toBe(`${line}\n`);
    expect(existsSync(b.envFile)).toBe(false);
  });

  it('when canary values are read, rotated and lost, then none ever reaches stdout, stderr or the status file', async () => {
    const canaryToken = `987654321:${'CANARYtok'.repeat(4)}`;
    const canaryKey = `sk-CANARY${'s3cr3t'.repeat(6)}`;
    expect(looksSecret(canaryToken) && looksSecret(canaryKey)).toBe(true);
    await put('telegram-bot-token', canaryToken);
    await put('openai-api-key', canaryKey);
    const b = box(both);
    const outputs: string[] = [];
    const ok = await b.run();
    expect(ok.code).toBe(0);
    outputs.push(ok.stdout, ok.stderr, readFileSync(b.statusFile, 'utf8'));

    // The token is read, then the key is missing: a failure after a value was already in hand.
    await ssm.send(new DeleteParameterCommand({ Name: param('openai-api-key') }));
    const failed = await b.run();
    expect(failed.code).toBe(1);
    outputs.push(failed.stdout, failed.stderr, readFileSync(b.statusFile, 'utf8'));

    await put('openai-api-key', `${canaryKey}\nsecond line`);
    const refused = await b.run();
    expect(refused.code).toBe(1);
    outputs.push(refused.stdout, refused.stderr, readFileSync(b.statusFile, 'utf8'));

    for (const text of outputs) {
      expect(text).not.toContain('CANARY');
      expect(text).not.toContain('s3cr3t');
      expect(looksSecret(text)).toBe(false);
    }
  });

  describe('when access is denied at first, as right after launch', () => {
    /** The real aws CLI behind a wrapper that answers AccessDenied for the first `failures` calls. */
    function deniedAtFirst(dir: string, failures: number): string {
      const bin = join(dir, 'bin');
      mkdirSync(bin);
      const real = spawnSync('bash', ['-c', 'command -v aws'], { encoding: 'utf8' }).stdout.trim();
      expect(real, 'the aws CLI must be installed').not.toBe('');
      writeFileSync(
        join(bin, 'aws'),
        [
          '#!/bin/bash',
          `count_file='${join(dir, 'aws-calls')}'`,
          'n=$(( $(cat "$count_file" 2>/dev/null || echo 0) + 1 ))',
          'echo "$n" >"$count_file"',
          `if (( n <= ${failures} )); then`,
          "  echo 'An error occurred (AccessDeniedException) when calling the GetParameter operation: not authorized' >&2",
          '  exit 254',
          'fi',
          `exec '${real}' "$@"`,
          '',
        ].join('\n'),
      );
      chmodSync(join(bin, 'aws'), 0o755);
      return bin;
    }

    it('then it backs off, retries and writes the env file once the tag lands', async () => {
      await put('telegram-bot-token', token);
      await put('openai-api-key', apiKey);
      const b = box(both, '10 20 1000');
      const result = await b.run({}, deniedAtFirst(b.dir, 2));
      expect(result.code, result.stderr).toBe(0);
      const denied =
        'An error occurred (AccessDeniedException) when calling the GetParameter operation: not authorized';
      expect(result.stderr).toBe(
        [1, 2]
          .map(
            (n) =>
              `fleetbot-secrets: reading ${param('telegram-bot-token')}: attempt ${n} failed, retrying in 0.0${n}0 s: ${denied}\n`,
          )
          .join(''),
      );
      expect(readFileSync(join(b.dir, 'aws-calls'), 'utf8').trim()).toBe('4');
      expect(parseSystemdEnvFile(readFileSync(b.envFile, 'utf8')).OPENAI_API_KEY).toBe(apiKey);
    });

    it('then past its budget it gives up with "access denied" and leaves no env file', async () => {
      await put('telegram-bot-token', token);
      const b = box([both[0] as [string, string]], '10 20 50');
      const result = await b.run({}, deniedAtFirst(b.dir, 1000));
      expect(result.code).toBe(1);
      // Sleeps of 10, 20 and 20 ms fill the 50 ms budget, so the fourth failure is the last.
      expect(readFileSync(join(b.dir, 'aws-calls'), 'utf8').trim()).toBe('4');
      const line =
        'fleetbot-secrets: failed: telegram-bot-token: access denied (AccessDeniedException), gave up after 0.050 s';
      expect(result.stderr.trim().split('\n').at(-1)).toBe(line);
      expect(readFileSync(b.statusFile, 'utf8')).toBe(`${line}\n`);
      expect(existsSync(b.envFile)).toBe(false);
    });
  });

  it('when the config names a variable that steers the CLI, then it is refused before anything is read', async () => {
    const b = box([['AWS_ENDPOINT_URL', param('telegram-bot-token')]]);
    const result = await b.run();
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /^fleetbot-secrets: failed: config .*: AWS_ENDPOINT_URL may not name a secret\n$/,
    );
  });

  it('when the run directory is not a tmpfs, then it refuses to write secrets there', async () => {
    const b = box(both);
    mkdirSync(b.runDir, { recursive: true });
    const fsType = spawnSync('stat', ['-f', '-c', '%T', b.runDir], { encoding: 'utf8' }).stdout.trim();
    const result = await b.run({ FLEETBOT_RUN_DIR_ON_DISK_OK: '' });
    if (fsType === 'tmpfs' || fsType === 'ramfs') {
      // This machine's temp directory is itself a tmpfs: then writing there is what should happen.
      expect(result.stderr).not.toContain('is not a tmpfs');
      return;
    }
    expect(result).toMatchObject({
      code: 1,
      stderr: `fleetbot-secrets: failed: ${b.runDir} is not a tmpfs; refusing to write secrets to disk\n`,
    });
    expect(existsSync(b.envFile)).toBe(false);
  });

  it('when run without a service name, then it says how to call it', async () => {
    const result = spawnSync('bash', [helper], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(result.status).toBe(1);
    expect(result.stderr).toBe('fleetbot-secrets: failed: usage: read-secrets SERVICE\n');
  });
});

describe('read-secrets.sh as a script', () => {
  it('when shellcheck reads it at style level, then it reports nothing', () => {
    expect(shellcheck(helper)).toEqual({ status: 0, output: '' });
  });

  it('when read, then it never traces, never echoes a value and reads with decryption, one name at a time', () => {
    const text = readFileSync(helper, 'utf8');
    expect(text).toBe(readSecretsScript);
    expect(text).toContain('set -euo pipefail');
    expect(text).toContain('set +x');
    expect(text).not.toMatch(/set -[a-z]*x|set -o xtrace|bash -[a-z]*x/);
    expect(text).not.toMatch(/echo[^\n]*\$value/);
    expect(text).toContain('--with-decryption');
    expect(text).not.toMatch(/get-parameters-by-path|--recursive/);
    // The only way a value leaves the shell: printf, a builtin, into the temp env file.
    const writes = text
      .split('\n')
      .filter((l) => /\$value\b/.test(l) && /\b(printf|echo|cat|tee|logger)\b/.test(l));
    expect(writes.map((l) => l.trim())).toEqual([`printf '%s="%s"\\n' "\${keys[$i]}" "$value" >>"$env_tmp"`]);
    // The TimeoutStartSec computation in src/aws/userdata.ts relies on these bounds.
    expect(text).toContain('readonly call_timeout_s=20');
    expect(text).toContain('timeout --kill-after=5 "$call_timeout_s" aws');
    expect(text.match(/--retry 3 --retry-connrefused --retry-delay 1 --max-time 5/g)).toHaveLength(2);
    // IMDSv2: a token first, then sent with the region read; nothing else fetches.
    const lines = text.replace(/\\\n\s*/g, ' ').split('\n');
    const imds = lines.filter((l) => l.includes('169.254.169.254'));
    expect(imds).toHaveLength(2);
    expect(imds[0]).toContain("-X PUT 'http://169.254.169.254/latest/api/token'");
    expect(imds[0]).toContain("-H 'X-aws-ec2-metadata-token-ttl-seconds: 300'");
    expect(imds[1]).toContain('-H "X-aws-ec2-metadata-token: $imds_token"');
    expect(lines.filter((l) => /\b(curl|wget)\b/.test(l))).toEqual(imds);
  });
});
