/**
 * The steps (plugins) of the documents the simulator runs. Most are single-step; AWS-RunPatchBaseline
 * (schema 2.2) has one step per platform, each behind a `platformType` precondition, so on a Linux
 * node only PatchLinux runs and the other two are skipped. Which step a caller may omit, and what a
 * skipped step reports, follow from that.
 */
import type { StepRecord } from './state.js';

interface StepDefinition {
  name: string;
  /** The `platformType` precondition; a step without one runs everywhere. */
  platform?: string;
}

const DOCUMENTS: Record<string, StepDefinition[]> = {
  'AWS-RunShellScript': [{ name: 'aws:runShellScript' }],
  'AWS-RunPowerShellScript': [{ name: 'aws:runPowerShellScript' }],
  'AWS-RunPatchBaseline': [
    { name: 'PatchWindows', platform: 'Windows' },
    { name: 'PatchLinux', platform: 'Linux' },
    { name: 'PatchMacOS', platform: 'MacOS' },
  ],
};

/** Custom documents the tests send (the deploy, bootstrap-check and restart documents) are single-step shell scripts. */
const CUSTOM: StepDefinition[] = [{ name: 'aws:runShellScript' }];

export const PATCH_BASELINE = 'AWS-RunPatchBaseline';

export function stepsFor(documentName: string, platformType: string): StepRecord[] {
  return (DOCUMENTS[documentName] ?? CUSTOM).map((step) =>
    step.platform === undefined || step.platform === platformType
      ? { name: step.name }
      : { name: step.name, skippedFor: step.platform },
  );
}

/**
 * What SSM Agent writes for a step whose precondition does not hold. The agent ends such a step with
 * code 0 and this output (agent/runpluginutil: `skipStep` sets Code 0 and Output to "Step execution
 * skipped due to unsatisfied preconditions: '%s'. Step name: %s",
 * https://github.com/aws/amazon-ssm-agent/blob/mainline/agent/runpluginutil/runpluginutil.go), and
 * the API shows it as Success, CommandPluginStatus having no Skipped value ("Pending | InProgress |
 * Success | TimedOut | Cancelled | Failed",
 * https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CommandPlugin.html). AWS's own
 * walkthroughs show the same text on Linux for a document's Windows step ("Step execution skipped due
 * to unsatisfied preconditions: '"StringEquals": [platformType, Windows]'. Step name: ...").
 */
export function skippedStepOutput(step: StepRecord): string {
  return `Step execution skipped due to unsatisfied preconditions: '"StringEquals": [platformType, ${step.skippedFor}]'. Step name: ${step.name}`;
}
