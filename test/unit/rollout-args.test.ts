import { describe, expect, it } from 'vitest';
import { deployArgs, echo, patchArgs } from '../../src/bot/commands/rollout-args.js';

/** The one message a refused argument string gets, or the parsed request. */
const refusal = (schema: typeof deployArgs, text: string) => {
  const result = schema.safeParse(text);
  if (result.success) throw new Error(`${JSON.stringify(text)} was accepted`);
  expect(result.error.issues).toHaveLength(1);
  return result.error.issues[0]?.message;
};

describe('echo', () => {
  it('when input is echoed, then it is quoted and escaped, and cut after 40 characters', () => {
    expect(echo('v1')).toBe('"v1"');
    expect(echo('a"b\\c\td')).toBe('"a\\"b\\\\c\\td"');
    expect(echo('x'.repeat(40))).toBe(`"${'x'.repeat(40)}"`);
    expect(echo('x'.repeat(41))).toBe(`"${'x'.repeat(40)}…"`);
  });
});

describe('/deploy arguments', () => {
  it('when only a version is given, then it deploys to all with no limits of its own', () => {
    const parsed = deployArgs.parse('v2.3.0');
    expect(parsed).toStrictEqual({
      operation: 'deploy',
      version: 'v2.3.0',
      reboot: 'never',
      targets: 'all',
      canary: 0,
    });
  });

  it('when targets and every option are given, then each is taken as written', () => {
    expect(
      deployArgs.parse('  2.3.0-rc.1   tag:env=prod --concurrency 10% --max-errors 2 --canary 3 '),
    ).toStrictEqual({
      operation: 'deploy',
      version: '2.3.0-rc.1',
      reboot: 'never',
      targets: 'tag:env=prod',
      concurrency: '10%',
      maxErrors: '2',
      canary: 3,
    });
    expect(deployArgs.parse('v1.0.0 --max-errors 0 --concurrency 10000')).toMatchObject({
      targets: 'all',
      concurrency: '10000',
      maxErrors: '0',
    });
  });

  it('when the version is missing or malformed, then it says what a version looks like', () => {
    expect(refusal(deployArgs, '')).toBe('Give the version to deploy, such as v2.3.0.');
    expect(refusal(deployArgs, '   ')).toBe('Give the version to deploy, such as v2.3.0.');
    expect(refusal(deployArgs, 'latest')).toBe(
      '"latest" is not a version; use semver such as v2.3.0 or 2.3.0-rc.1.',
    );
    expect(refusal(deployArgs, 'v1.0.0;reboot')).toBe(
      '"v1.0.0;reboot" is not a version; use semver such as v2.3.0 or 2.3.0-rc.1.',
    );
  });

  it('when the text spans lines, then nothing of it is read', () => {
    expect(refusal(deployArgs, 'v1.0.0\n--canary 1')).toBe('Put the whole command on one line.');
    expect(refusal(deployArgs, 'v1.0.0 all\r')).toBe('Put the whole command on one line.');
  });

  it('when the targets are not in the grammar, then the refusal echoes them cut short', () => {
    expect(refusal(deployArgs, 'v1.0.0 <@U123|admin>')).toBe(
      '"<@U123|admin>" is not a target; use all, user:<id>[,<id>], tag:<key>=<value> or i-…[,i-…].',
    );
    expect(refusal(deployArgs, `v1.0.0 user:${'9'.repeat(50)}`)).toBe(
      `"user:${'9'.repeat(35)}…" is not a target; use all, user:<id>[,<id>], tag:<key>=<value> or i-…[,i-…].`,
    );
  });

  it('when an amount is out of range, then the refusal names the option and the value', () => {
    const concurrency = (value: string) =>
      `--concurrency takes a count from 1 to 10000 or a percentage, not "${value}".`;
    for (const value of ['0', '10001', '0%', '101%', '-1', '1.5', 'all'])
      expect(refusal(deployArgs, `v1.0.0 --concurrency ${value}`), value).toBe(concurrency(value));
    const maxErrors = (value: string) =>
      `--max-errors takes a count from 0 to 10000 or a percentage, not "${value}".`;
    for (const value of ['10001', '0%', '200%', 'none'])
      expect(refusal(deployArgs, `v1.0.0 --max-errors ${value}`), value).toBe(maxErrors(value));
    for (const value of ['0', '1001', '10000', '5%', 'x'])
      expect(refusal(deployArgs, `v1.0.0 --canary ${value}`), value).toBe(
        `--canary takes a count from 1 to 1000, not "${value}".`,
      );
    expect(deployArgs.parse('v1.0.0 --canary 1000').canary).toBe(1000);
  });

  it('when an option is repeated, lacks its value or is unknown, then it is refused', () => {
    expect(refusal(deployArgs, 'v1.0.0 --canary 1 --canary 2')).toBe('"--canary" is given twice.');
    expect(refusal(deployArgs, 'v1.0.0 all --concurrency')).toBe('"--concurrency" needs a value.');
    expect(refusal(deployArgs, 'v1.0.0 --force yes')).toBe('"--force" is not an option of /deploy.');
    expect(refusal(deployArgs, 'v1.0.0 --reboot never')).toBe('"--reboot" is not an option of /deploy.');
    // A second target is read as an option, not as more targets.
    expect(refusal(deployArgs, 'v1.0.0 all user:1')).toBe('"user:1" needs a value.');
  });
});

describe('/patch arguments', () => {
  it('when scan or install is given, then it is the operation, with reboot never unless asked', () => {
    expect(patchArgs.parse('scan')).toStrictEqual({
      operation: 'patch-scan',
      reboot: 'never',
      targets: 'all',
      canary: 0,
    });
    expect(patchArgs.parse('install user:1,2 --reboot if-needed --max-errors 5%')).toStrictEqual({
      operation: 'patch-install',
      reboot: 'if-needed',
      targets: 'user:1,2',
      maxErrors: '5%',
      canary: 0,
    });
  });

  it('when the operation is missing or unknown, then it asks for scan or install', () => {
    expect(refusal(patchArgs, '')).toBe('Say scan or install.');
    expect(refusal(patchArgs, 'upgrade')).toBe('"upgrade" is not scan or install.');
    expect(refusal(patchArgs, 'v1.0.0')).toBe('"v1.0.0" is not scan or install.');
  });

  it('when --reboot is misused, then it is refused', () => {
    expect(refusal(patchArgs, 'scan --reboot if-needed')).toBe('--reboot only applies to patch install.');
    expect(refusal(patchArgs, 'install --reboot always')).toBe(
      '--reboot is if-needed or never, not "always".',
    );
    expect(refusal(patchArgs, 'install --canary 1')).toBe('"--canary" is not an option of /patch.');
  });
});
