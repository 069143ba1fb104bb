import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { AwsSimulatorControl } from '../peers/aws-simulator.js';

/** What the stack gives the binder: the values of the template's `!Ref`s in its environment. */
export interface BinderStack {
  prefix: string;
  env: string;
  launchTemplateId: string;
}

interface BinderResource {
  Properties: {
    FunctionName: string;
    Code: { ZipFile: string };
    Environment: { Variables: Record<string, string> };
  };
}

/**
 * Deploys infra/fleetbot.yaml's SecretBinderFunction, its inline code exactly as the stack ships
 * it, into the simulator. Returns the function's name as the stack names it (`<Prefix>-secret-binder`).
 */
export function deploySecretBinder(
  control: AwsSimulatorControl,
  accountId: string,
  stack: BinderStack,
): string {
  const path = fileURLToPath(new URL('../../infra/fleetbot.yaml', import.meta.url));
  // CloudFormation's short tags (!Ref, !Sub) are unknown to a YAML parser; read without them, a
  // `!Ref X` is the plain string X, which is all this needs.
  const template = parse(readFileSync(path, 'utf8'), { logLevel: 'silent' }) as {
    Resources: { SecretBinderFunction: BinderResource };
  };
  const fn = template.Resources.SecretBinderFunction.Properties;
  const refs: Record<string, string> = {
    Prefix: stack.prefix,
    Env: stack.env,
    LaunchTemplate: stack.launchTemplateId,
  };
  const environment = Object.fromEntries(
    Object.entries(fn.Environment.Variables).map(([name, ref]) => {
      const value = refs[ref];
      if (value === undefined)
        throw new Error(`the binder's ${name} refers to ${ref}, which this helper does not know`);
      return [name, value];
    }),
  );
  // biome-ignore lint/suspicious/noTemplateCurlyInString: the template's Fn::Sub text, read literally.
  if (fn.FunctionName !== '${Prefix}-secret-binder')
    throw new Error(`the binder is named ${fn.FunctionName}; update this helper`);
  const name = `${stack.prefix}-secret-binder`;
  control.deployFunction(accountId, name, { code: fn.Code.ZipFile, environment });
  return name;
}
