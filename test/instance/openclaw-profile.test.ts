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
import { afterEach, describe, expect, it } from 'vitest';
import { defaultOpenclawVersion, openclawProfileScript } from '../../src/aws/userdata.js';
import { isVersion } from '../../src/core/version.js';
import { shellcheck } from '../support/tools.js';

/*
 * src/aws/instance/openclaw-profile.sh, the default install command, run against fake node, npm, dnf,
 * alternatives, getent, chown and systemctl, with /etc, /opt and /var/lib moved under a scratch dir.
 * Then the deploy.sh it writes, which the deploy document runs.
 */

const profile = fileURLToPath(new URL('../../src/aws/instance/openclaw-profile.sh', import.meta.url));

const shims: Record<string, string> = {
  node: String.raw`#!/bin/bash
major="$(cat "$FAKE_DIR/node-major" 2>/dev/null || true)"
if [[ -z "$major" ]]; then echo 'node: not installed' >&2; exit 127; fi
if [[ "$1" == -p ]]; then echo "$major"; exit 0; fi
printf 'node %s\n' "$*" >>"$FAKE_DIR/calls"
`,
  dnf: String.raw`#!/bin/bash
printf 'dnf %s\n' "$*" >>"$FAKE_DIR/calls"
printf '#!/bin/bash\necho 22\n' >"$FAKE_BIN/node-22"
chmod +x "$FAKE_BIN/node-22"
# With no Node.js at all, the first one installed becomes node; an older one keeps the link.
if [[ ! -s "$FAKE_DIR/node-major" ]]; then echo 22 >"$FAKE_DIR/node-major"; fi
`,
  alternatives: String.raw`#!/bin/bash
printf 'alternatives %s\n' "$*" >>"$FAKE_DIR/calls"
if [[ "$1 $2" == "--set node" && "$3" == */node-22 ]]; then echo 22 >"$FAKE_DIR/node-major"; fi
`,
  npm: String.raw`#!/bin/bash
if [[ "$*" == "prefix -g" ]]; then echo "$FAKE_DIR/prefix"; exit 0; fi
printf 'npm %s\n' "$*" >>"$FAKE_DIR/calls"
if [[ -e "$FAKE_DIR/npm-fails" ]]; then echo 'npm ERR! 404 Not Found' >&2; exit 1; fi
mkdir -p "$FAKE_DIR/prefix/bin"
printf '#!/bin/bash\n' >"$FAKE_DIR/prefix/bin/openclaw"
chmod +x "$FAKE_DIR/prefix/bin/openclaw"
`,
  getent: `#!/bin/bash
[[ "$1 $2" == "passwd assistant" ]] || exit 2
echo "assistant:x:990:990::$FAKE_DIR/home/assistant:/usr/sbin/nologin"
`,
  chown: String.raw`#!/bin/bash
printf 'chown %s\n' "$*" >>"$FAKE_DIR/calls"
`,
  systemctl: String.raw`#!/bin/bash
printf 'systemctl %s\n' "$*" >>"$FAKE_DIR/calls"
case "$1" in
  restart) [[ ! -e "$FAKE_DIR/start-fails" ]] ;;
  is-active)
    if [[ -e "$FAKE_DIR/start-fails" ]]; then [[ "$2" == --quiet ]] || echo failed; exit 3; fi
    [[ "$2" == --quiet ]] || echo active
    ;;
esac
`,
};

const scratch: string[] = [];
afterEach(() => {
  for (const dir of scratch.splice(0)) rmSync(dir, { recursive: true, force: true });
});

interface Box {
  dir: string;
  root: string;
  unitFile: string;
  deployScript: string;
  versionFile: string;
  statusFile: string;
  run(
    command: string,
    args?: string[],
    env?: Record<string, string>,
  ): { status: number | null; output: string };
  calls(): string[];
}

function box(options: { nodeMajor?: number; dnf?: boolean } = {}): Box {
  const dir = mkdtempSync(join(tmpdir(), 'fleetbot-profile-'));
  scratch.push(dir);
  const bin = join(dir, 'bin');
  const root = join(dir, 'root');
  mkdirSync(bin);
  mkdirSync(join(dir, 'home', 'assistant'), { recursive: true });
  for (const [name, text] of Object.entries(shims)) {
    if (name === 'dnf' && options.dnf === false) continue;
    writeFileSync(join(bin, name), text);
    chmodSync(join(bin, name), 0o755);
  }
  if (options.nodeMajor) writeFileSync(join(dir, 'node-major'), `${options.nodeMajor}\n`);
  const runDir = join(dir, 'run', 'fleetbot');
  return {
    dir,
    root,
    unitFile: join(root, 'etc', 'systemd', 'system', 'assistant.service'),
    deployScript: join(root, 'opt', 'fleetbot', 'deploy.sh'),
    versionFile: join(root, 'var', 'lib', 'fleetbot', 'version'),
    statusFile: join(runDir, 'assistant.status'),
    run(command, args = [], env = {}) {
      const result = spawnSync(command, args, {
        encoding: 'utf8',
        timeout: 60_000,
        env: {
          PATH: `${bin}:/usr/local/bin:/usr/bin:/bin`,
          HOME: dir,
          TMPDIR: dir,
          FAKE_DIR: dir,
          FAKE_BIN: bin,
          FLEETBOT_PROFILE_ROOT: root,
          FLEETBOT_RUN_DIR: runDir,
          FLEETBOT_SERVICE_NAME: 'assistant.service',
          FLEETBOT_SERVICE_USER: 'assistant',
          FLEETBOT_TELEGRAM_USER_ID: '4242',
          ...env,
        },
      });
      return { status: result.status, output: `${result.stdout}${result.stderr}` };
    },
    calls: () =>
      existsSync(join(dir, 'calls')) ? readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n') : [],
  };
}

describe('openclaw-profile.sh', () => {
  it('when shellcheck reads it at style level, then it reports nothing', () => {
    expect(shellcheck(profile)).toEqual({ status: 0, output: '' });
    expect(readFileSync(profile, 'utf8')).toBe(openclawProfileScript);
  });

  it('when no version is configured, then it pins the release fleetbot names, one every version check accepts', () => {
    expect(openclawProfileScript).toContain(`readonly pinned_version='${defaultOpenclawVersion}'`);
    expect(defaultOpenclawVersion).toBe('2026.9.6');
    expect(isVersion(defaultOpenclawVersion)).toBe(true);
  });

  it('when Node.js 22 is there, then it installs the pinned openclaw, writes the unit, its config and deploy.sh, and starts nothing', () => {
    const b = box({ nodeMajor: 22 });
    const result = b.run('bash', [profile]);
    expect(result.status, result.output).toBe(0);
    expect(result.output).toContain('openclaw-profile: openclaw 2026.9.6 installed as assistant.service');
    expect(b.calls()).toEqual([
      'npm install -g --no-fund --no-audit openclaw@2026.9.6',
      `chown -R assistant: ${b.dir}/home/assistant/.openclaw`,
    ]);

    const home = join(b.dir, 'home', 'assistant');
    expect(readFileSync(b.unitFile, 'utf8')).toBe(
      [
        '[Unit]',
        'Description=fleetbot assistant: openclaw gateway',
        'Wants=network-online.target',
        'After=network-online.target',
        'StartLimitIntervalSec=600',
        'StartLimitBurst=5',
        '',
        '[Service]',
        'Type=exec',
        'User=assistant',
        `WorkingDirectory=${home}`,
        `Environment=HOME=${home}`,
        `ExecStart=${b.dir}/bin/node ${b.dir}/prefix/bin/openclaw gateway run --bind loopback --port 18789`,
        'Restart=on-failure',
        'RestartSec=10',
        'NoNewPrivileges=true',
        'PrivateTmp=true',
        '',
        '[Install]',
        'WantedBy=multi-user.target',
        '',
      ].join('\n'),
    );
    expect(statSync(b.unitFile).mode & 0o777).toBe(0o644);
    // The secrets come from the drop-in's env file only; the unit names none.
    expect(readFileSync(b.unitFile, 'utf8')).not.toMatch(/EnvironmentFile|TOKEN|API_KEY/);

    // Only the owner may talk to the bot, and the gateway listens on loopback only.
    expect(JSON.parse(readFileSync(join(home, '.openclaw', 'openclaw.json'), 'utf8'))).toEqual({
      gateway: { mode: 'local', bind: 'loopback', port: 18789 },
      channels: { telegram: { enabled: true, dmPolicy: 'allowlist', allowFrom: ['4242'] } },
    });
    expect(statSync(join(home, '.openclaw', 'openclaw.json')).mode & 0o777).toBe(0o600);

    expect(statSync(b.deployScript).mode & 0o777).toBe(0o755);
    expect(shellcheck(b.deployScript)).toEqual({ status: 0, output: '' });
    expect(readFileSync(b.versionFile, 'utf8')).toMatch(
      /^version=2026\.9\.6\ndeployed=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/,
    );
    // No temp file left beside the unit or deploy.sh.
    expect(readdirSync(join(b.root, 'etc', 'systemd', 'system'))).toEqual(['assistant.service']);
    expect(readdirSync(join(b.root, 'opt', 'fleetbot'))).toEqual(['deploy.sh']);
  });

  it('when an older Node.js is active, then it installs nodejs22 and points node at it', () => {
    const b = box({ nodeMajor: 20 });
    const result = b.run('bash', [profile], { FLEETBOT_VERSION: 'v2026.10.1' });
    expect(result.status, result.output).toBe(0);
    expect(b.calls().slice(0, 3)).toEqual([
      'dnf install -y nodejs22 nodejs22-npm',
      `alternatives --set node ${b.dir}/bin/node-22`,
      'npm install -g --no-fund --no-audit openclaw@2026.10.1',
    ]);
    expect(readFileSync(b.versionFile, 'utf8')).toMatch(/^version=v2026\.10\.1\n/);
  });

  it('when there is no Node.js, then dnf installs it', () => {
    const b = box({});
    const result = b.run('bash', [profile]);
    expect(result.status, result.output).toBe(0);
    expect(b.calls()[0]).toBe('dnf install -y nodejs22 nodejs22-npm');
    expect(b.calls()).not.toContain(expect.stringMatching(/^alternatives/));
  });

  it.skipIf(existsSync('/usr/bin/dnf') || existsSync('/bin/dnf'))(
    'when there is neither Node.js 22 nor dnf, then it says what to do and writes nothing',
    () => {
      const b = box({ nodeMajor: 18, dnf: false });
      const result = b.run('bash', [profile]);
      expect(result.status).toBe(1);
      expect(result.output).toBe(
        'openclaw-profile: Node.js >= 22 is missing and there is no dnf: put Node.js in the AMI or set INSTANCE_INSTALL_COMMAND\n',
      );
      expect(existsSync(b.root)).toBe(false);
    },
  );

  it('when the owner already edited openclaw.json, then a rerun leaves it alone', () => {
    const b = box({ nodeMajor: 22 });
    const config = join(b.dir, 'home', 'assistant', '.openclaw', 'openclaw.json');
    mkdirSync(join(b.dir, 'home', 'assistant', '.openclaw'));
    writeFileSync(config, '{"mine":true}\n');
    expect(b.run('bash', [profile]).status).toBe(0);
    expect(readFileSync(config, 'utf8')).toBe('{"mine":true}\n');
  });

  it.each([
    ['FLEETBOT_VERSION', 'latest', 'FLEETBOT_VERSION is not a version such as 2026.9.6'],
    ['FLEETBOT_SERVICE_NAME', 'x;reboot', 'FLEETBOT_SERVICE_NAME is not a unit name'],
    ['FLEETBOT_TELEGRAM_USER_ID', '12a', 'FLEETBOT_TELEGRAM_USER_ID is not numeric'],
  ])('when %s is %j, then it refuses before installing anything', (name, value, message) => {
    const b = box({ nodeMajor: 22 });
    const result = b.run('bash', [profile], { [name]: value });
    expect(result).toEqual({ status: 1, output: `openclaw-profile: ${message}\n` });
    expect(b.calls()).toEqual([]);
  });
});

describe('the deploy.sh the profile writes', () => {
  function installed(): Box {
    const b = box({ nodeMajor: 22 });
    expect(b.run('bash', [profile]).status).toBe(0);
    rmSync(join(b.dir, 'calls'));
    return b;
  }

  it('when given a version, then it installs it, restarts the unit (which reads its secrets again), checks it and records it', () => {
    const b = installed();
    const result = b.run(b.deployScript, ['v2026.9.7']);
    expect(result.status, result.output).toBe(0);
    expect(b.calls()).toEqual([
      'npm install -g --no-fund --no-audit openclaw@2026.9.7',
      'systemctl reset-failed -- assistant.service',
      'systemctl restart -- assistant.service',
      'systemctl is-active --quiet -- assistant.service',
    ]);
    expect(result.output).toBe(
      'deploy: installing openclaw@2026.9.7\ndeploy: restarting assistant.service\ndeploy: done, openclaw 2026.9.7 is active\n',
    );
    expect(readFileSync(b.versionFile, 'utf8')).toMatch(/^version=v2026\.9\.7\ndeployed=/);
  });

  it.each([['2026.9'], ['2026.9.6; reboot'], ['$(id)'], ['latest'], ['']])(
    'when given %j, then it refuses before npm runs',
    (version) => {
      const b = installed();
      expect(b.run(b.deployScript, [version])).toEqual({ status: 2, output: 'deploy: invalid version\n' });
      expect(b.run(b.deployScript, [])).toEqual({ status: 2, output: 'deploy: invalid version\n' });
      expect(b.calls()).toEqual([]);
    },
  );

  it('when the unit does not come back, then it fails with the unit state and the secrets status line and keeps the old version', () => {
    const b = installed();
    const before = readFileSync(b.versionFile, 'utf8');
    writeFileSync(join(b.dir, 'start-fails'), '');
    mkdirSync(join(b.dir, 'run', 'fleetbot'), { recursive: true });
    const line = 'fleetbot-secrets: failed: openai-api-key is not stored (ParameterNotFound)';
    writeFileSync(b.statusFile, `${line}\n`);
    const result = b.run(b.deployScript, ['2026.9.7']);
    expect(result.status).toBe(1);
    expect(result.output.trim().split('\n').slice(-2)).toEqual([
      'deploy: failed: assistant.service is failed after installing openclaw@2026.9.7',
      line,
    ]);
    expect(readFileSync(b.versionFile, 'utf8')).toBe(before);
  });

  it('when npm cannot install the version, then it fails before touching the unit', () => {
    const b = installed();
    writeFileSync(join(b.dir, 'npm-fails'), '');
    const result = b.run(b.deployScript, ['2026.99.1']);
    expect(result.status).not.toBe(0);
    expect(result.output).toContain('npm ERR! 404 Not Found');
    expect(b.calls()).toEqual(['npm install -g --no-fund --no-audit openclaw@2026.99.1']);
  });
});
