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
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import {
  bootstrapLogPath,
  bootstrapSentinelPath,
  encodeUserData,
  type InstancePaths,
  instancePaths,
  maxUserDataBytes,
  openclawProfileScript,
  readSecretsScript,
  renderUserData,
  secretsStartTimeoutSeconds,
  shellQuote,
  UserDataError,
  type UserDataOptions,
} from '../../src/aws/userdata.js';
import { looksSecret, type SecretKindName } from '../../src/core/secret-kinds.js';
import { parseSystemdEnvFile } from '../instance/systemd-env-file.js';
import { runTool, shellcheck } from '../support/tools.js';

/** The bootstrap as renderUserData reads it, before its holes are filled. */
const bootstrapTemplateFile = fileURLToPath(new URL('../../src/aws/userdata.sh', import.meta.url));

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

/** The here-document `install_file PATH MODE [packed]` writes, unpacked as the instance would. */
function installed(script: string, path: string): { mode: string; text: string } | undefined {
  const start = script.indexOf(`install_file ${shellQuote(path)} `);
  if (start < 0) return undefined;
  const header = script.slice(start, script.indexOf('\n', start));
  const bodyStart = start + header.length + 1;
  const body = script.slice(bodyStart, script.indexOf('\nFLEETBOT_EOF\n', bodyStart) + 1);
  const [, mode, packed] = header.match(/ (0\d{3})( packed)? <<'FLEETBOT_EOF'$/) ?? [];
  if (!mode) throw new Error(`unexpected install line: ${header}`);
  const text = packed ? gunzipSync(Buffer.from(body.replace(/\n/g, ''), 'base64')).toString('utf8') : body;
  return { mode, text };
}

describe('renderUserData', () => {
  it('when both kinds are asked for, then the helper config names exactly those two parameters and no other user path', () => {
    const script = renderUserData(base);
    const paths = script.match(/\/[^\s'"]*\/users\/[^\s'"]*/g) ?? [];
    expect([...paths].sort()).toEqual([...names].sort());
    expect(installed(script, '/etc/fleetbot/assistant.secrets.conf')).toEqual({
      mode: '0644',
      text: [
        '# fleetbot-secrets: parameter names only, never values. Written by the fleetbot bootstrap.',
        'owner assistant',
        'retry 5000 60000 300000',
        `secret TELEGRAM_BOT_TOKEN ${names[0]}`,
        `secret OPENAI_API_KEY ${names[1]}`,
        '',
      ].join('\n'),
    });
    // The helper reads them, one name at a time and decrypted (test/instance/read-secrets.test.ts).
    expect(installed(script, instancePaths.helper)).toEqual({ mode: '0755', text: readSecretsScript });
    expect(script).not.toMatch(/get-parameter|--recursive/);
  });

  it('when rendered, then the drop-in reads the secrets before every start, into a tmpfs env file, and waits out the helper', () => {
    const script = renderUserData(base);
    const timeout = secretsStartTimeoutSeconds({ firstMs: 5000, maxMs: 60_000, budgetMs: 300_000 }, 2);
    expect(installed(script, '/etc/systemd/system/assistant.service.d/fleetbot-secrets.conf')).toEqual({
      mode: '0644',
      text: [
        '# fleetbot: the secrets are read from Parameter Store before every start of this unit.',
        '[Unit]',
        'Wants=network-online.target',
        'After=network-online.target',
        '',
        '[Service]',
        'ExecStartPre=+/usr/local/libexec/fleetbot/read-secrets assistant',
        'EnvironmentFile=-/run/fleetbot/assistant.env',
        `TimeoutStartSec=${timeout}`,
        '',
      ].join('\n'),
    });
    // Sleeps of 5+10+20+40+60+60+60 s fill 255 of the 300 s budget; 8 failed calls and 2 good ones of
    // at most 25 s each, 48 s of IMDS and 30 s to spare.
    expect(timeout).toBe(255 + 10 * 25 + 48 + 30);
    expect(timeout).toBeLessThan(900);
    // A unit name given with its suffix names the same files.
    const suffixed = renderUserData({ ...base, serviceName: 'assistant.service' });
    expect(
      installed(suffixed, '/etc/systemd/system/assistant.service.d/fleetbot-secrets.conf'),
    ).toBeDefined();
    expect(installed(suffixed, '/etc/fleetbot/assistant.secrets.conf')).toBeDefined();
  });

  it('when no install command is configured, then the openclaw profile is installed and run, and it stays under 16 KB at every maximum length', () => {
    const script = renderUserData(base);
    expect(installed(script, instancePaths.profile)).toEqual({ mode: '0755', text: openclawProfileScript });
    expect(script).toContain(`readonly INSTALL_COMMAND='${instancePaths.profile}'`);

    const longest = renderUserData({
      parameterPrefix: 'p'.repeat(40),
      userId: '9'.repeat(16),
      kinds: bothKinds,
      serviceName: `a${'b'.repeat(63)}`,
      serviceUser: `u${'s'.repeat(31)}`,
      version: `v999999.999999.999999-${'r'.repeat(20)}`,
    });
    expect(installed(longest, instancePaths.profile)?.text).toBe(openclawProfileScript);
    expect(Buffer.byteLength(longest)).toBeLessThan(maxUserDataBytes);
    expect(() => encodeUserData(longest)).not.toThrow();

    const custom = renderUserData({ ...base, installCommand: 'dnf install -y my-assistant' });
    expect(installed(custom, instancePaths.profile)).toBeUndefined();
    expect(custom).not.toContain('openclaw');
  });

  it('when one kind is asked for, then the other is never read', () => {
    const script = renderUserData({ ...base, kinds: ['openai-api-key'] });
    expect(script).toContain(names[1]);
    expect(script).not.toContain('telegram-bot-token');
    expect(script).not.toContain('TELEGRAM_BOT_TOKEN');
    expect(installed(script, '/etc/fleetbot/assistant.secrets.conf')?.text).toContain(
      `\nsecret OPENAI_API_KEY ${names[1]}\n`,
    );
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

  it('when rendered, then tracing is off, nothing writes an env file on disk and the log is private', () => {
    const script = renderUserData(base);
    expect(script.split('\n')[0]).toBe('#!/bin/bash');
    expect(script).toContain('set -euo pipefail');
    expect(script).toContain('set +x');
    expect(script).not.toMatch(/set -[a-z]*x|set -o xtrace|bash -[a-z]*x/);
    expect(script).toContain('umask 077');
    // The env file is the helper's, on /run; the bootstrap only names it for the install command.
    expect(script).not.toContain('/etc/fleetbot/assistant.env');
    expect(script).toContain(`readonly ENV_FILE='/run/fleetbot/assistant.env'`);
    expect(script).toContain(`readonly STATUS_FILE='/run/fleetbot/assistant.status'`);
    expect(script).toContain(`readonly LOG_FILE='${bootstrapLogPath}'`);
    expect(script).toContain(`readonly SENTINEL='${bootstrapSentinelPath}'`);
    expect(script).toContain('exec > >(tee -a "$LOG_FILE") 2>&1');
    expect(script).toContain('chmod 0600 "$LOG_FILE"');
  });

  it('when operator values hold quotes, then each lands single-quoted and comes back byte for byte in bash', () => {
    const installCommand = `echo "it's" \`id\` $(whoami) 'x'\\n; rm -rf /nope`;
    const script = renderUserData({ ...base, installCommand, version: 'v1.2.3-rc.1' });
    expect(script).toContain(`readonly INSTALL_COMMAND=${shellQuote(installCommand)}`);
    const settings = script.slice(0, script.indexOf('# Directories on the way'));
    const file = writeScript(`${settings}\nprintf '%s' "$INSTALL_COMMAND"\n`);
    const result = runTool('bash', [file]);
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
      expect(shellcheck(writeScript(script))).toEqual({ status: 0, output: '' });
    }
    // The template as it is in the repository, holes and all: what an editor of it sees checked.
    expect(shellcheck(bootstrapTemplateFile)).toEqual({ status: 0, output: '' });
  });

  it('when parsed by bash -n, then the syntax is valid', () => {
    const script = renderUserData({ ...base, installCommand: 'true', version: '1.0.0' });
    expect(runTool('bash', ['-n', writeScript(script)])).toEqual({ status: 0, output: '' });
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

    expect(script).toContain('secret OPENAI_API_KEY /CANARY-prefix/users/4242424242/openai-api-key\n');
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
    ['version', { version: 'v01.2.3' }],
    ['parameterPrefix', { parameterPrefix: `a/${canary}` }],
    ['kinds', { kinds: [canary] as unknown as SecretKindName[] }],
    ['kinds', { kinds: [] }],
    ['kinds', { kinds: ['openai-api-key', 'openai-api-key'] as SecretKindName[] }],
    ['installCommand', { installCommand: '  ' }],
    ['paths.configDir', { paths: { ...instancePaths, configDir: `/etc/../${canary}` } }],
    ['paths.log', { paths: { ...instancePaths, log: `relative-${canary}` } }],
    ['paths.runDir', { paths: { ...instancePaths, runDir: `/run/${canary} x` } }],
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
    expect(Buffer.byteLength(script)).toBeLessThan(maxUserDataBytes);
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
 * The fake systemctl plays systemd's part on `restart`: it runs the ExecStartPre= of the installed
 * drop-in, that is the helper the script unpacked, and fails the start when it fails.
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
if [[ ! -f "$FAKE_DIR/values/$(basename "$name")" ]]; then
  echo "An error occurred (ParameterNotFound) when calling the GetParameter operation: Parameter $name not found." >&2
  exit 254
fi
cat "$FAKE_DIR/values/$(basename "$name")"
`,
    systemctl: String.raw`#!/bin/bash
printf 'systemctl %s sentinel=%s\n' "$*" "$([[ -e "$FAKE_SENTINEL" ]] && echo yes || echo no)" >>"$FAKE_CALLS"
if [[ "$1" == restart ]]; then
  pre="$(sed -n 's/^ExecStartPre=+//p' "$FAKE_UNIT_DIR/$2.d/fleetbot-secrets.conf")"
  read -r helper service <<<"$pre"
  FLEETBOT_CONFIG_DIR="$FAKE_CONFIG_DIR" FLEETBOT_RUN_DIR="$FAKE_RUN_DIR" FLEETBOT_RUN_DIR_ON_DISK_OK=1 \
    "$helper" "$service" >>"$FAKE_DIR/journal" 2>&1 || exit 1
fi
`,
    id: String.raw`#!/bin/bash
printf 'id %s\n' "$*" >>"$FAKE_CALLS"
[[ -e "$FAKE_DIR/user-added" ]]
`,
    useradd: String.raw`#!/bin/bash
printf 'useradd %s\n' "$*" >>"$FAKE_CALLS"
touch "$FAKE_DIR/user-added"
`,
    chown: String.raw`#!/bin/bash
printf 'chown %s\n' "$*" >>"$FAKE_CALLS"
`,
  };

  interface Sandbox {
    dir: string;
    paths: InstancePaths;
    envFile: string;
    statusFile: string;
    run(options: Partial<UserDataOptions>, awsFailures?: number): { status: number | null; output: string };
    calls(): string[];
    log(): string;
    journal(): string;
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
    const paths: InstancePaths = {
      sentinel: join(dir, 'var', 'lib', 'fleetbot', 'bootstrap-done'),
      log: join(dir, 'var', 'log', 'fleetbot-bootstrap.log'),
      helper: join(dir, 'usr', 'local', 'libexec', 'fleetbot', 'read-secrets'),
      configDir: join(dir, 'etc', 'fleetbot'),
      unitDir: join(dir, 'etc', 'systemd', 'system'),
      runDir: join(dir, 'run', 'fleetbot'),
      profile: join(dir, 'usr', 'local', 'libexec', 'fleetbot', 'openclaw-profile'),
    };
    const calls = join(dir, 'calls.log');
    const journal = join(dir, 'journal');
    return {
      dir,
      paths,
      envFile: join(paths.runDir, 'assistant.env'),
      statusFile: join(paths.runDir, 'assistant.status'),
      run(options, awsFailures = 0) {
        const file = join(dir, 'userdata.sh');
        writeFileSync(file, renderUserData({ ...base, installCommand: 'true', paths, ...options }));
        const result = spawnSync('bash', [file], {
          encoding: 'utf8',
          // Generous: a loaded machine, and the helper starts a few processes per secret.
          timeout: 60_000,
          env: {
            PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`,
            HOME: dir,
            TMPDIR: dir,
            FAKE_DIR: dir,
            FAKE_CALLS: calls,
            FAKE_SENTINEL: paths.sentinel,
            FAKE_AWS_FAILURES: String(awsFailures),
            FAKE_UNIT_DIR: paths.unitDir,
            FAKE_CONFIG_DIR: paths.configDir,
            FAKE_RUN_DIR: paths.runDir,
          },
        });
        return { status: result.status, output: `${result.stdout}${result.stderr}` };
      },
      calls: () => (existsSync(calls) ? readFileSync(calls, 'utf8').trim().split('\n') : []),
      log: () => readFileSync(paths.log, 'utf8'),
      journal: () => (existsSync(journal) ? readFileSync(journal, 'utf8') : ''),
    };
  }

  // Quotes, substitutions and globs: any shell interpretation would change the value or create the file.
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

  it('when the parameters are readable, then the unit starts on its secrets from /run, mode 600, and the sentinel comes last', () => {
    const box = sandboxWithSecrets();
    const env = join(box.dir, 'install-env');
    const installCommand = `umask >${box.dir}/install-umask; env | grep ^FLEETBOT_ | sort >${env}`;
    const result = box.run({ installCommand, version: 'v1.2.3', retry: fast });
    expect(result.status, result.output).toBe(0);

    // What the unit gets is what systemd reads from the env file: the values byte for byte.
    expect(parseSystemdEnvFile(readFileSync(box.envFile, 'utf8'))).toEqual({
      TELEGRAM_BOT_TOKEN: botToken,
      OPENAI_API_KEY: box.key,
    });
    expect(statSync(box.envFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(box.statusFile, 'utf8')).toMatch(
      /^fleetbot-secrets: ok \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/,
    );
    expect(existsSync(join(box.dir, 'pwned'))).toBe(false);
    expect(readdirSync(box.paths.runDir).sort()).toEqual(['assistant.env', 'assistant.status']);
    // Nothing secret under /etc: the config names parameters and the drop-in names the env file.
    expect(readdirSync(box.paths.configDir)).toEqual(['assistant.secrets.conf']);
    expect(readFileSync(box.paths.helper, 'utf8')).toBe(readSecretsScript);
    expect(statSync(box.paths.helper).mode & 0o777).toBe(0o755);
    expect(
      statSync(join(box.paths.unitDir, 'assistant.service.d', 'fleetbot-secrets.conf')).mode & 0o777,
    ).toBe(0o644);

    const calls = box.calls();
    expect(calls.filter((c) => c.startsWith('aws ')).map((c) => c.match(/--name (\S+)/)?.[1])).toEqual(names);
    expect(calls).toContain('useradd --system --create-home --shell /usr/sbin/nologin assistant');
    expect(calls.some((c) => /^chown assistant: .*\/run\/fleetbot\/\.assistant\.env\.\w+$/.test(c))).toBe(
      true,
    );
    expect(calls.filter((c) => c.startsWith('systemctl '))).toEqual([
      'systemctl daemon-reload sentinel=no',
      'systemctl enable assistant.service sentinel=no',
      'systemctl restart assistant.service sentinel=no',
    ]);
    expect(readFileSync(join(box.dir, 'install-umask'), 'utf8').trim()).toBe('0022');
    expect(readFileSync(env, 'utf8')).toBe(
      [
        `FLEETBOT_ENV_FILE=${box.envFile}`,
        'FLEETBOT_SERVICE_NAME=assistant.service',
        'FLEETBOT_SERVICE_USER=assistant',
        'FLEETBOT_TELEGRAM_USER_ID=123456789',
        'FLEETBOT_VERSION=v1.2.3',
        '',
      ].join('\n'),
    );

    expect(readFileSync(box.paths.sentinel, 'utf8')).toMatch(
      /^finished=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\ninstance=i-0fake\nversion=v1\.2\.3\n$/,
    );
    const log = box.log();
    expect(log.trim().split('\n').at(-1)).toBe('bootstrap: done');
    expect(log.indexOf('writing the sentinel')).toBeGreaterThan(
      log.indexOf('enabling and starting assistant'),
    );
    expect(log.indexOf('running the install command')).toBeGreaterThan(
      log.indexOf('installing fleetbot-secrets'),
    );
    expect(statSync(box.paths.log).mode & 0o777).toBe(0o600);

    for (const text of [log, result.output, calls.join('\n'), box.journal()]) {
      expect(text).not.toContain(botToken);
      expect(text).not.toContain('sk-live');
    }
  });

  it('when AccessDenied comes twice, then the helper backs off, retries and the bootstrap still finishes', () => {
    const box = sandboxWithSecrets();
    const result = box.run({ retry: fast }, 2);
    expect(result.status, result.output).toBe(0);
    const journal = box.journal();
    expect(journal).toContain(
      `fleetbot-secrets: reading ${names[0]}: attempt 1 failed, retrying in 0.010 s: An error occurred (AccessDeniedException)`,
    );
    expect(journal).toContain(
      `fleetbot-secrets: reading ${names[0]}: attempt 2 failed, retrying in 0.020 s:`,
    );
    expect(journal).not.toContain('attempt 3');
    expect(readFileSync(join(box.dir, 'aws-count'), 'utf8').trim()).toBe('4');
    expect(parseSystemdEnvFile(readFileSync(box.envFile, 'utf8')).TELEGRAM_BOT_TOKEN).toBe(botToken);
    expect(existsSync(box.paths.sentinel)).toBe(true);
  });

  it('when access stays denied past the budget, then the bootstrap fails with the helper status line and leaves no sentinel', () => {
    const box = sandboxWithSecrets();
    mkdirSync(join(box.dir, 'var', 'lib', 'fleetbot'), { recursive: true });
    writeFileSync(box.paths.sentinel, 'finished=long ago\n');
    const result = box.run(
      { retry: { firstDelaySeconds: 0.01, maxDelaySeconds: 0.02, maxTotalSeconds: 0.05 } },
      1000,
    );

    expect(result.status).not.toBe(0);
    // Sleeps of 10, 20 and 20 ms fill the 50 ms budget, so the fourth failure is the last.
    expect(readFileSync(join(box.dir, 'aws-count'), 'utf8').trim()).toBe('4');
    const line =
      'fleetbot-secrets: failed: telegram-bot-token: access denied (AccessDeniedException), gave up after 0.050 s';
    expect(readFileSync(box.statusFile, 'utf8')).toBe(`${line}\n`);
    expect(box.log().trim().split('\n').at(-1)).toBe(
      `bootstrap: failed: assistant.service did not start: ${line} (exit 1)`,
    );
    expect(existsSync(box.paths.sentinel)).toBe(false);
    expect(existsSync(box.envFile)).toBe(false);
  });

  it('when a parameter is missing, then the bootstrap fails at once and names it', () => {
    const box = sandbox({ 'telegram-bot-token': `${botToken}\n` });
    const result = box.run({ retry: fast });
    expect(result.status).not.toBe(0);
    expect(box.log().trim().split('\n').at(-1)).toBe(
      'bootstrap: failed: assistant.service did not start: fleetbot-secrets: failed: openai-api-key is not stored (ParameterNotFound) (exit 1)',
    );
    expect(readFileSync(join(box.dir, 'aws-count'), 'utf8').trim()).toBe('2');
    expect(existsSync(box.envFile)).toBe(false);
  });

  it('when a stored value spans lines, then it is refused without being logged and no env file appears', () => {
    const box = sandbox({ 'telegram-bot-token': `${botToken}\nOPENAI_API_KEY=sk-injected\n` });
    const result = box.run({ kinds: ['telegram-bot-token'], retry: fast });
    expect(result.status).not.toBe(0);
    const log = box.log();
    expect(log).toContain(
      'bootstrap: failed: assistant.service did not start: fleetbot-secrets: failed: telegram-bot-token spans several lines; refused (exit 1)',
    );
    for (const text of [log, box.journal(), result.output]) {
      expect(text).not.toContain(botToken);
      expect(text).not.toContain('sk-injected');
    }
    expect(existsSync(box.envFile)).toBe(false);
  });
});
