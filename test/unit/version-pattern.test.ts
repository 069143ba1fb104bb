import { beforeAll, describe, expect, it } from 'vitest';
import { renderUserData, UserDataError } from '../../src/aws/userdata.js';
import { isVersion, versionPattern } from '../../src/core/version.js';
import { loadTemplate, type Template } from '../support/cfn-template.js';
import { runTool } from '../support/tools.js';

/*
 * One rule for a deploy version: src/core/version.ts. The bot and the worker check it, the UserData
 * renderer checks it, and the SSM documents in infra/fleetbot.yaml check it again on AWS's side
 * before the version reaches an instance. A pattern that drifts in any of them lets a version through
 * one check that another refuses.
 */

/** What the one rule says of each sample: a leading zero, a missing part or a trailing command is refused. */
const samples: [string, boolean][] = [
  ['v1.2.3', true],
  ['1.2.3', true],
  ['v01.2.3', false],
  ['v1.2.3-rc.1', true],
  ['1.2', false],
  ['v1.2.3;rm', false],
];

interface VersionParameter {
  document: string;
  allowedPattern?: string;
  /** The deploy step's own bash check, where the document's script repeats the rule. */
  scriptPattern?: string;
}

/** Every `version` parameter of every SSM document in the template, with the pattern its script checks. */
function versionParameters(template: Template): VersionParameter[] {
  return Object.entries(template.Resources)
    .filter(([, r]) => r.Type === 'AWS::SSM::Document')
    .flatMap(([name, r]) => {
      const content = r.Properties.Content as {
        parameters?: Record<string, { allowedPattern?: string }>;
        mainSteps?: { inputs?: { runCommand?: string[] } }[];
      };
      const parameter = content.parameters?.version;
      if (!parameter) return [];
      const script = (content.mainSteps ?? []).flatMap((s) => s.inputs?.runCommand ?? []);
      const assignment = script.map((line) => /^version_re='([^']*)'$/.exec(line)?.[1]).find(Boolean);
      return [{ document: name, allowedPattern: parameter.allowedPattern, scriptPattern: assignment }];
    });
}

/** What bash's `[[ =~ ]]` (POSIX extended regex) makes of each sample, as the deploy step runs it. */
function bashAccepts(pattern: string, values: string[]): boolean[] {
  const script =
    're="$1"; shift; for v in "$@"; do if [[ "$v" =~ $re ]]; then echo yes; else echo no; fi; done';
  const result = runTool('bash', ['-c', script, 'bash', pattern, ...values]);
  expect(result.status, result.output).toBe(0);
  return result.output
    .trim()
    .split('\n')
    .map((answer) => answer === 'yes');
}

describe('the deploy version pattern', () => {
  it('when the samples are checked against core, then it accepts and refuses them as the rule says', () => {
    for (const [version, accepted] of samples) expect(isVersion(version), version).toBe(accepted);
  });

  it('when UserData is rendered with each sample, then the renderer accepts exactly what core accepts', () => {
    const base = {
      parameterPrefix: 'fleetbot',
      userId: '123456789',
      kinds: ['openai-api-key'] as const,
      serviceName: 'assistant',
    };
    for (const [version, accepted] of samples) {
      const render = () => renderUserData({ ...base, version });
      if (accepted) expect(render, version).not.toThrow();
      else expect(render, version).toThrow(UserDataError);
    }
  });

  describe('in infra/fleetbot.yaml', () => {
    let parameters: VersionParameter[];
    beforeAll(async () => {
      parameters = versionParameters(await loadTemplate());
    }, 60_000);

    it('when a document takes a version, then its allowedPattern is core versionPattern and judges every sample alike', () => {
      expect(parameters.map((p) => p.document)).toContain('DeployDocument');
      for (const { document, allowedPattern } of parameters) {
        expect(allowedPattern, document).toBe(versionPattern.source);
        const pattern = new RegExp(allowedPattern ?? '$^');
        for (const [version, accepted] of samples)
          expect(pattern.test(version), `${document}: ${version}`).toBe(accepted);
      }
    });

    it("when the deploy step checks the version again in bash, then bash's regex judges every sample alike", () => {
      const checked = parameters.filter((p) => p.scriptPattern !== undefined);
      expect(checked.map((p) => p.document)).toContain('DeployDocument');
      for (const { document, scriptPattern } of checked)
        expect(
          bashAccepts(
            scriptPattern ?? '',
            samples.map(([version]) => version),
          ),
          document,
        ).toEqual(samples.map(([, accepted]) => accepted));
    });
  });
});
