import { spawnSync } from 'node:child_process';
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
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  bootstrapLogPath,
  bootstrapSentinelPath,
  encodeUserData,
  maxUserDataBytes,
  renderUserData,
  shellQuote,
  UserDataError,
  type UserDataOptions,
} from '../../src/aws/userdata.js';
import { looksSecret, type SecretKindName } from '../../src/core/secret-kinds.js';

const bothKinds: SecretKindName[] = ['telegram-bot-token', 'openai-api-key'];
const base: UserDataOptions = {
  parameterPrefix: 'fleetbot',
  userId: '123456789',
  kinds: bothKinds,
  serviceName: 'assistant',
};
const names = ['/fleetbot/users/123456789/telegram-bot-token', '/fleetbot/users/123456789/openai-api-key'];

/** Backslash-continued lines joined, so each entry is one whole command. */
function commands(script: string): string[] {
  return script.replace(/\\\n\s*/g, ' ').split('\n');
}

function run(command: string, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error) throw new Error(`${command} could not run (is it installed?): ${result.error.message}`);
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

const scratch: string[] = [];
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fleetbot-userdata-'));
  scratch.push(dir);
  return dir;
}
afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function writeScript(script: string): string {
  const file = join(tempDir(), 'userdata.sh');
  writeFileSync(file, script);
  return file;
}

describe('renderUserData', () => {
  it('when both kinds are asked for, then the script names exactly those two parameters and no other user path', () => {
    const script = renderUserData(base);
    const paths = script.match(/\/[^\s'"]*\/users\/[^\s'"]*/g) ?? [];
    expect([...paths].sort()).toEqual([...names].sort());
    expect(script).toContain(`write_env_line 'TELEGRAM_BOT_TOKEN' '${names[0]}'`);
    expect(script).toContain(`write_env_line 'OPENAI_API_KEY' '${names[1]}'`);
    expect(script).toContain('--with-decryption');
    expect(script).toContain('--query Parameter.Value --output text --region "$REGION"');
    expect(script).not.toMatch(/get-parameters-by-path|--recursive/);
  });

  it('when one kind is asked for, then the other is never read', () => {
    const script = renderUserData({ ...base, kinds: ['openai-api-key'] });
    expect(script).toContain(names[1]);
    expect(script).not.toContain('telegram-bot-token');
    expect(script).not.toContain('TELEGRAM_BOT_TOKEN');
  });

  it('when the script talks to the metadata service, then it takes a token first and sends it on every read', () => {
    const script = renderUserData(base);
    const lines = commands(script);
    const put = lines.filter((l) => l.includes('-X PUT'));
    expect(put).toHaveLength(1);
    expect(put[0]).toContain("'http://169.254.169.254/latest/api/token'");
    expect(put[0]).toContain("-H 'X-aws-ec2-metadata-token-ttl-seconds: 300'");

    const imds = lines.filter((l) => l.includes('169.254.169.254'));
    expect(imds.length).toBeGreaterThanOrEqual(2);
    for (const line of imds) {
      expect(line).toMatch(/\bcurl\b/);
      if (!line.includes('-X PUT')) expect(line).toContain('-H "X-aws-ec2-metadata-token: $IMDS_TOKEN"');
    }
    // Any fetch tool outside those lines could reach IMDSv1 without a token.
    expect(lines.filter((l) => /\b(curl|wget)\b/.test(l)).every((l) => imds.includes(l))).toBe(true);
    expect(script).toContain('REGION="$(imds_get placement/region)"');
    expect(script).toContain('INSTANCE_ID="$(imds_get instance-id)"');
  });

  it('when rendered, then tracing is off and the env file is written through printf under umask 077', () => {
    const script = renderUserData(base);
    expect(script.split('\n')[0]).toBe('#!/bin/bash');
    expect(script).toContain('set -euo pipefail');
    expect(script).toContain('set +x');
    expect(script).not.toMatch(/set -[a-z]*x|set -o xtrace|bash -[a-z]*x/);
    expect(script).toContain('umask 077');
    expect(script).toContain(`printf '%s=%s\\n' "$key" "$PARAM_VALUE" >>"$ENV_TMP"`);
    expect(script).toContain('chmod 0600 "$ENV_TMP"');
    expect(script).not.toMatch(/echo[^\n]*PARAM_VALUE/);
    expect(script).toContain(`readonly LOG_FILE='${bootstrapLogPath}'`);
    expect(script).toContain(`readonly SENTINEL='${bootstrapSentinelPath}'`);
    expect(script).toContain('exec > >(tee -a "$LOG_FILE") 2>&1');
  });

  it('when operator values hold quotes, then each lands single-quoted and comes back byte for byte in bash', () => {
    const installCommand = `echo "it's" \`id\` $(whoami) 'x'\\n; rm -rf /nope`;
    const script = renderUserData({ ...base, installCommand, version: 'v1.2.3-rc.1' });
    expect(script).toContain(`readonly INSTALL_COMMAND=${shellQuote(installCommand)}`);
    const settings = script.slice(0, script.indexOf('readonly RETRY_BUDGET_MS'));
    const file = writeScript(`${settings}\nprintf '%s' "$INSTALL_COMMAND"\n`);
    const result = run('bash', [file]);
    expect(result).toEqual({ status: 0, output: installCommand });
  });

  it('when checked by shellcheck at style level, then it reports nothing, minimal and with every option', () => {
    const variants = [
      renderUserData(base),
      renderUserData({
        ...base,
        serviceUser: 'svc_user',
        serviceName: 'assistant@main',
        installCommand: `curl -fsS https://example.com/install.sh | bash -s -- "it's"`,
        version: 'v2.0.0-beta.3',
      }),
    ];
    for (const script of variants) {
      expect(run('shellcheck', ['-s', 'bash', '-S', 'style', writeScript(script)])).toEqual({
        status: 0,
        output: '',
      });
    }
  });

  it('when parsed by bash -n, then the syntax is valid', () => {
    const script = renderUserData({ ...base, installCommand: 'true', version: '1.0.0' });
    expect(run('bash', ['-n', writeScript(script)])).toEqual({ status: 0, output: '' });
  });

  it('when every option carries a canary, then no secret-shaped text reaches the script', () => {
    // Exists in the test only: nothing can hand it to the renderer, which is the point.
    const canarySecret = `sk-CANARY${'s3cr3t'.repeat(6)}`;
    const canaryToken = `987654321:${'CANARYtok'.repeat(4)}`;
    expect(looksSecret(canarySecret) && looksSecret(canaryToken)).toBe(true);

    const options = {
      parameterPrefix: 'CANARY-prefix',
      userId: '4242424242',
      kinds: bothKinds,
      serviceName: 'canary-assistant',
      serviceUser: 'canary_user',
      installCommand: "echo 'CANARY install'",
      version: 'v9.9.9-CANARY',
      // A caller smuggling values in through an unknown key gets them ignored, not rendered.
      values: { 'openai-api-key': canarySecret, 'telegram-bot-token': canaryToken },
    } as UserDataOptions;
    const script = renderUserData(options);

    expect(script).toContain("'/CANARY-prefix/users/4242424242/openai-api-key'");
    expect(script).not.toContain(canarySecret);
    expect(script).not.toContain(canaryToken);
    expect(script).not.toContain('sk-');
    expect(script).not.toContain('s3cr3t');
    expect(script).not.toContain('CANARYtok');
    for (const line of script.split('\n')) expect(looksSecret(line), line).toBe(false);
    expect(script).not.toMatch(/\b\d{5,16}:[A-Za-z0-9_-]{20,}/);
  });

  it('when the options type is inspected, then no key can carry a secret value', () => {
    expectTypeOf<keyof UserDataOptions>().toEqualTypeOf<
      | 'parameterPrefix'
      | 'userId'
      | 'kinds'
      | 'serviceName'
      | 'serviceUser'
      | 'installCommand'
      | 'version'
      | 'paths'
      | 'retry'
    >();
    expect(renderUserData.length).toBe(1);
  });

  const canary = 'CANARY-7f3e';
  it.each([
    ['userId', { userId: `12a${canary}` }],
    ['userId', { userId: '12345678901234567' }],
    ['serviceName', { serviceName: `x;${canary}` }],
    ['serviceName', { serviceName: `Assistant${canary}` }],
    ['serviceUser', { serviceUser: `root;${canary}` }],
    ['version', { version: `latest-${canary}` }],
    ['version', { version: `v1.2.3; ${canary}` }],
    ['parameterPrefix', { parameterPrefix: `a/${canary}` }],
    ['kinds', { kinds: [canary] as unknown as SecretKindName[] }],
    ['kinds', { kinds: [] }],
    ['kinds', { kinds: ['openai-api-key', 'openai-api-key'] as SecretKindName[] }],
    ['installCommand', { installCommand: '  ' }],
    ['paths.envFile', { paths: { envFile: `/etc/../${canary}`, sentinel: '/s', log: '/l' } }],
    ['paths.log', { paths: { envFile: '/e', sentinel: '/s', log: `relative-${canary}` } }],
    ['retry.firstDelaySeconds', { retry: { firstDelaySeconds: 0, maxTotalSeconds: 1 } }],
  ] as const)(
    'when %s is invalid (%j), then the error names the field and not the value',
    (field, override) => {
      let error: unknown;
      try {
        renderUserData({ ...base, ...override } as UserDataOptions);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(UserDataError);
      expect((error as UserDataError).field).toBe(field);
      expect((error as Error).message).toMatch(new RegExp(`^userdata ${field.replace('.', '\\.')}: `));
      expect((error as Error).message).not.toContain(canary);
    },
  );
});

describe('encodeUserData', () => {
  it('when a script is encoded, then base64 decodes back to the same text', () => {
    const script = renderUserData({ ...base, installCommand: 'echo "é ü"', version: 'v1.0.0' });
    const encoded = encodeUserData(script);
    expect(encoded).toMatch(/^[A-Za-z0-9+/]+=*$/);
    expect(Buffer.from(encoded, 'base64').toString('utf8')).toBe(script);
    expect(Buffer.byteLength(script)).toBeLessThan(maxUserDataBytes / 2);
  });

  it('when the raw script reaches 16 KB, then it is accepted at the limit and rejected one byte over', () => {
    expect(maxUserDataBytes).toBe(16_384);
    expect(Buffer.from(encodeUserData('a'.repeat(16_384)), 'base64')).toHaveLength(16_384);
    expect(() => encodeUserData('a'.repeat(16_385))).toThrow(
      /script: is 16385 bytes; EC2 accepts at most 16384/,
    );
  });

  it('when characters take several bytes, then the limit counts bytes, not characters', () => {
    expect(() => encodeUserData('€'.repeat(6_000))).toThrow(UserDataError);
  });
});

/**
 * Runs the real script with fake curl, aws, systemctl, id, useradd and chown first on PATH. The fakes
 * refuse what the real services would refuse (IMDS reads without a token, get-parameter without
 * decryption or region), so a passing run says the script asks correctly, not just that bash ran.
 */
describe('the rendered script, run against fake tools', () => {
  const shims: Record<string, string> = {
    curl: String.raw`#!/bin/bash
printf 'curl %s\n' "$*" >>"$FAKE_CALLS"
args=" $* "
if [[ "$args" == *" -X PUT "* ]]; then
  [[ "$args" == *"X-aws-ec2-metadata-token-ttl-seconds: "* ]] || exit 22
  printf 'fake-imds-token'
  exit 0
fi
[[ "$args" == *"X-aws-ec2-metadata-token: fake-imds-token"* ]] || exit 22
for url; do :; done
case "$url" in
  http://169.254.169.254/latest/meta-data/placement/region) printf 'eu-west-1' ;;
  http://169.254.169.254/latest/meta-data/instance-id) printf 'i-0fake' ;;
  *) exit 22 ;;
esac
`,
    aws: String.raw`#!/bin/bash
printf 'aws %s\n' "$*" >>"$FAKE_CALLS"
n=$(( $(cat "$FAKE_DIR/aws-count" 2>/dev/null || echo 0) + 1 ))
echo "$n" >"$FAKE_DIR/aws-count"
if (( n <= FAKE_AWS_FAILURES )); then
  echo 'An error occurred (AccessDeniedException) when calling the GetParameter operation: not authorized' >&2
  exit 254
fi
args=" $* "
[[ "$args" == *" ssm get-parameter "* && "$args" == *" --with-decryption "* && "$args" == *" --region eu-west-1 "* ]] || exit 2
[[ "$args" == *" --query Parameter.Value --output text "* ]] || exit 2
while (( $# )); do
  if [[ "$1" == --name ]]; then name="$2"; fi
  shift
done
cat "$FAKE_DIR/values/$(basename "$name")"
`,
    systemctl: String.raw`#!/bin/bash
printf 'systemctl %s sentinel=%s\n' "$*" "$([[ -e "$FAKE_SENTINEL" ]] && echo yes || echo no)" >>"$FAKE_CALLS"
`,
    id: String.raw`#!/bin/bash
printf 'id %s\n' "$*" >>"$FAKE_CALLS"
exit 1
`,
    useradd: String.raw`#!/bin/bash
printf 'useradd %s\n' "$*" >>"$FAKE_CALLS"
`,
    chown: String.raw`#!/bin/bash
printf 'chown %s\n' "$*" >>"$FAKE_CALLS"
`,
  };

  interface Sandbox {
    dir: string;
    paths: { envFile: string; sentinel: string; log: string };
    run(options: Partial<UserDataOptions>, awsFailures?: number): { status: number | null; output: string };
    calls(): string[];
    log(): string;
  }

  function sandbox(values: Record<string, string>): Sandbox {
    const dir = tempDir();
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    mkdirSync(join(dir, 'values'));
    for (const [name, text] of Object.entries(shims)) {
      writeFileSync(join(bin, name), text);
      chmodSync(join(bin, name), 0o755);
    }
    for (const [kind, value] of Object.entries(values)) writeFileSync(join(dir, 'values', kind), value);
    const paths = {
      envFile: join(dir, 'etc', 'fleetbot', 'assistant.env'),
      sentinel: join(dir, 'var', 'lib', 'fleetbot', 'bootstrap-done'),
      log: join(dir, 'var', 'log', 'fleetbot-bootstrap.log'),
    };
    const calls = join(dir, 'calls.log');
    return {
      dir,
      paths,
      run(options, awsFailures = 0) {
        const file = join(dir, 'userdata.sh');
        writeFileSync(file, renderUserData({ ...base, paths, ...options }));
        const result = spawnSync('bash', [file], {
          encoding: 'utf8',
          timeout: 10_000,
          env: {
            PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`,
            HOME: dir,
            TMPDIR: dir,
            FAKE_DIR: dir,
            FAKE_CALLS: calls,
            FAKE_SENTINEL: paths.sentinel,
            FAKE_AWS_FAILURES: String(awsFailures),
          },
        });
        return { status: result.status, output: `${result.stdout}${result.stderr}` };
      },
      calls: () => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []),
      log: () => readFileSync(paths.log, 'utf8'),
    };
  }

  // Quotes, substitutions and globs: any shell interpretation would change the line or create the file.
  const openaiKey = (dir: string) => `sk-live'"$(touch ${dir}/pwned)\`touch ${dir}/pwned\`$HOME*;|&\\n end`;
  const botToken = `123456789:${'T'.repeat(35)}`;
  const fast = { firstDelaySeconds: 0.01, maxDelaySeconds: 0.02, maxTotalSeconds: 5 };

  function sandboxWithSecrets(): Sandbox & { key: string } {
    const probe = sandbox({});
    const key = openaiKey(probe.dir);
    writeFileSync(join(probe.dir, 'values', 'openai-api-key'), `${key}\n`);
    writeFileSync(join(probe.dir, 'values', 'telegram-bot-token'), `${botToken}\n`);
    return Object.assign(probe, { key });
  }

  it('when the parameters are readable, then the env file holds the values verbatim, mode 600, and the sentinel comes last', () => {
    const box = sandboxWithSecrets();
    const installCommand = `umask >${box.dir}/install-umask; printf '%s' "$FLEETBOT_VERSION" >${box.dir}/install-version; test -f "$FLEETBOT_ENV_FILE"`;
    const result = box.run({ installCommand, version: 'v1.2.3', retry: fast });
    expect(result.status, result.output).toBe(0);

    expect(readFileSync(box.paths.envFile, 'utf8')).toBe(
      `TELEGRAM_BOT_TOKEN=${botToken}\nOPENAI_API_KEY=${box.key}\n`,
    );
    expect(statSync(box.paths.envFile).mode & 0o777).toBe(0o600);
    expect(existsSync(join(box.dir, 'pwned'))).toBe(false);
    expect(readdirSync(join(box.dir, 'etc', 'fleetbot'))).toEqual(['assistant.env']);

    const calls = box.calls();
    expect(calls.filter((c) => c.startsWith('aws ')).map((c) => c.match(/--name (\S+)/)?.[1])).toEqual(names);
    expect(calls).toContain('id -u assistant');
    expect(calls).toContain('useradd --system --create-home --shell /usr/sbin/nologin assistant');
    expect(calls.some((c) => /^chown assistant: .*\/etc\/fleetbot\/\.env\.\w+$/.test(c))).toBe(true);
    expect(calls.filter((c) => c.startsWith('systemctl '))).toEqual([
      'systemctl daemon-reload sentinel=no',
      'systemctl enable assistant sentinel=no',
      'systemctl restart assistant sentinel=no',
    ]);
    expect(readFileSync(join(box.dir, 'install-umask'), 'utf8').trim()).toBe('0022');
    expect(readFileSync(join(box.dir, 'install-version'), 'utf8')).toBe('v1.2.3');

    expect(readFileSync(box.paths.sentinel, 'utf8')).toMatch(
      /^finished=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\ninstance=i-0fake\nversion=v1\.2\.3\n$/,
    );
    const log = box.log();
    expect(log.trim().split('\n').at(-1)).toBe('bootstrap: done');
    expect(log.indexOf('writing the sentinel')).toBeGreaterThan(
      log.indexOf('enabling and starting assistant'),
    );
    expect(statSync(box.paths.log).mode & 0o777).toBe(0o600);

    for (const text of [log, result.output, calls.join('\n')]) {
      expect(text).not.toContain(botToken);
      expect(text).not.toContain('sk-live');
    }
  });

  it('when AccessDenied comes twice, then it backs off, retries and still finishes', () => {
    const box = sandboxWithSecrets();
    const result = box.run({ retry: fast }, 2);
    expect(result.status, result.output).toBe(0);
    const log = box.log();
    expect(log).toContain(
      `bootstrap: reading ${names[0]}: attempt 1 failed, retrying in 0.010 s: An error occurred (AccessDeniedException)`,
    );
    expect(log).toContain(`bootstrap: reading ${names[0]}: attempt 2 failed, retrying in 0.020 s:`);
    expect(log).not.toContain('attempt 3');
    expect(readFileSync(join(box.dir, 'aws-count'), 'utf8').trim()).toBe('4');
    expect(readFileSync(box.paths.envFile, 'utf8')).toContain(`TELEGRAM_BOT_TOKEN=${botToken}\n`);
    expect(existsSync(box.paths.sentinel)).toBe(true);
  });

  it('when access stays denied past the budget, then it fails clearly, starts nothing and leaves no sentinel', () => {
    const box = sandboxWithSecrets();
    mkdirSync(join(box.dir, 'var', 'lib', 'fleetbot'), { recursive: true });
    writeFileSync(box.paths.sentinel, 'finished=long ago\n');
    const result = box.run(
      { retry: { firstDelaySeconds: 0.01, maxDelaySeconds: 0.02, maxTotalSeconds: 0.05 } },
      1000,
    );

    expect(result.status).not.toBe(0);
    const log = box.log();
    // Sleeps of 10, 20 and 20 ms fill the 50 ms budget, so the fourth failure is the last.
    expect(readFileSync(join(box.dir, 'aws-count'), 'utf8').trim()).toBe('4');
    expect(log).toContain(
      `attempt 4 failed, giving up after 0.050 s of waiting: An error occurred (AccessDeniedException)`,
    );
    expect(log.trim().split('\n').at(-1)).toBe(`bootstrap: failed: could not read ${names[0]} (exit 1)`);
    expect(existsSync(box.paths.sentinel)).toBe(false);
    expect(readdirSync(join(box.dir, 'etc', 'fleetbot'))).toEqual([]);
    expect(box.calls().some((c) => c.startsWith('systemctl '))).toBe(false);
  });

  it('when a stored value spans lines, then it is refused without being logged and no env file appears', () => {
    const box = sandbox({ 'telegram-bot-token': `${botToken}\nOPENAI_API_KEY=sk-injected\n` });
    const result = box.run({ kinds: ['telegram-bot-token'], retry: fast });
    expect(result.status).not.toBe(0);
    const log = box.log();
    expect(log).toContain(`bootstrap: failed: ${names[0]} is empty or spans several lines (exit 1)`);
    expect(log).not.toContain(botToken);
    expect(log).not.toContain('sk-injected');
    expect(readdirSync(join(box.dir, 'etc', 'fleetbot'))).toEqual([]);
  });
});
