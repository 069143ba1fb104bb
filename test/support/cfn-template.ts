// biome-ignore-all lint/suspicious/noTemplateCurlyInString: CloudFormation Fn::Sub strings and IAM policy variables are literal ${...} text here.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

/*
 * infra/fleetbot.yaml as data: read with cfn-lint's own decoder (CloudFormation's YAML dialect,
 * short-form !Sub and !GetAtt, as plain JSON), and resolved for one account, region and set of
 * parameters the way CloudFormation would (only the intrinsics the template uses).
 */

const run = promisify(execFile);
export const templatePath = fileURLToPath(new URL('../../infra/fleetbot.yaml', import.meta.url));

export interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: string | string[];
  Resource?: unknown;
  NotResource?: unknown;
  Principal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}
export interface PolicyDocument {
  Version?: string;
  Statement: Statement[];
}
export interface Resource {
  Type: string;
  Condition?: string;
  DependsOn?: string | string[];
  Properties: Record<string, unknown>;
}
export interface Template {
  Parameters: Record<string, { Default?: unknown }>;
  Conditions?: Record<string, unknown>;
  Resources: Record<string, Resource>;
  Outputs: Record<string, unknown>;
}

/** A template decoded by cfn-lint's own decoder (short-form intrinsics as their long forms); fails on any problem it reports. */
export async function decodeTemplate(path: string): Promise<Template> {
  const decode = [
    'import json, sys',
    'from cfnlint.decode import decode',
    'template, problems = decode(sys.argv[1])',
    'if problems: sys.exit("\\n".join(str(p) for p in problems))',
    'print(json.dumps(template))',
  ].join('\n');
  const { stdout } = await run('python3', ['-c', decode, path]);
  return JSON.parse(stdout) as Template;
}

/** infra/fleetbot.yaml, decoded. */
export const loadTemplate = (): Promise<Template> => decodeTemplate(templatePath);

export const list = (v: unknown): unknown[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

export function resource(t: Template, name: string): Resource {
  const r = t.Resources[name];
  if (!r) throw new Error(`no resource ${name}`);
  return r;
}

export interface Deployment {
  partition: string;
  region: string;
  accountId: string;
  /** Template parameters; defaults fill the rest. */
  parameters: Record<string, string>;
  /** Physical ids CloudFormation would generate (Ref of a resource without a fixed name). */
  physicalIds: Record<string, string>;
  /** Fn::GetAtt values, as 'Resource.Attribute'. */
  attributes: Record<string, string>;
}

/** The sentinel for AWS::NoValue while resolving; removed from lists and objects. */
const noValue = Symbol('AWS::NoValue');

/**
 * The template with every intrinsic the template uses resolved for one deployment: Ref (parameters,
 * pseudo parameters, resources), Fn::Sub (string and [string, vars] forms; `${!x}` escapes), Fn::GetAtt,
 * Fn::If with Conditions (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Condition), Fn::Join, AWS::NoValue.
 * Resources and outputs whose Condition is false are dropped, as CloudFormation does.
 */
export function resolveTemplate(t: Template, d: Deployment): Template {
  const params: Record<string, string> = {};
  for (const [name, p] of Object.entries(t.Parameters)) {
    const value = d.parameters[name] ?? (p.Default === undefined ? undefined : String(p.Default));
    if (value === undefined) throw new Error(`parameter ${name} has no value and no default`);
    params[name] = value;
  }
  const pseudo: Record<string, string> = {
    'AWS::Partition': d.partition,
    'AWS::Region': d.region,
    'AWS::AccountId': d.accountId,
    'AWS::URLSuffix': 'amazonaws.com',
    'AWS::StackName': 'fleetbot',
  };
  const conditions: Record<string, boolean> = {};
  const condition = (name: string): boolean => {
    if (!(name in conditions)) {
      const expr = t.Conditions?.[name];
      if (expr === undefined) throw new Error(`no condition ${name}`);
      conditions[name] = evalCondition(expr);
    }
    return conditions[name] as boolean;
  };
  const evalCondition = (expr: unknown): boolean => {
    const [fn, arg] = Object.entries(expr as Record<string, unknown>)[0] ?? [];
    const args = arg as unknown[];
    switch (fn) {
      case 'Fn::Equals':
        return String(resolve(args[0])) === String(resolve(args[1]));
      case 'Fn::Not':
        return !evalCondition(args[0]);
      case 'Fn::And':
        return args.every(evalCondition);
      case 'Fn::Or':
        return args.some(evalCondition);
      case 'Condition':
        return condition(arg as string);
      default:
        throw new Error(`unsupported condition ${fn}`);
    }
  };
  const ref = (name: string): string => {
    if (name in pseudo) return pseudo[name] as string;
    if (name in params) return params[name] as string;
    const physical = d.physicalIds[name];
    if (physical === undefined) throw new Error(`no physical id for Ref ${name}`);
    return physical;
  };
  const getAtt = (name: string, attribute: string): string => {
    const value = d.attributes[`${name}.${attribute}`];
    if (value === undefined) throw new Error(`no value for Fn::GetAtt ${name}.${attribute}`);
    return value;
  };
  const sub = (text: string, vars: Record<string, unknown>): string =>
    text.replace(/\$\{(!?)([^}]+)\}/g, (_, bang: string, name: string) => {
      if (bang) return `\${${name}}`;
      if (name in vars) return String(resolve(vars[name]));
      const dot = name.indexOf('.');
      return dot > 0 && !name.startsWith('AWS::')
        ? getAtt(name.slice(0, dot), name.slice(dot + 1))
        : ref(name);
    });
  const resolve = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(resolve).filter((x) => x !== noValue);
    if (v === null || typeof v !== 'object') return v;
    const entries = Object.entries(v as Record<string, unknown>);
    const [only] = entries;
    if (entries.length === 1 && only) {
      const [fn, arg] = only;
      switch (fn) {
        case 'Ref':
          return arg === 'AWS::NoValue' ? noValue : ref(arg as string);
        case 'Fn::Sub':
          return typeof arg === 'string'
            ? sub(arg, {})
            : sub(
                (arg as [string, Record<string, unknown>])[0],
                (arg as [string, Record<string, unknown>])[1],
              );
        case 'Fn::GetAtt': {
          const [name, attribute] = typeof arg === 'string' ? arg.split('.') : (arg as string[]);
          return getAtt(name as string, attribute as string);
        }
        case 'Fn::If': {
          const [name, then, otherwise] = arg as [string, unknown, unknown];
          return resolve(condition(name) ? then : otherwise);
        }
        case 'Fn::Join': {
          const [sep, items] = arg as [string, unknown[]];
          return (resolve(items) as unknown[]).join(sep);
        }
        default:
          if (fn.startsWith('Fn::')) throw new Error(`unsupported intrinsic ${fn}`);
      }
    }
    const out: Record<string, unknown> = {};
    for (const [key, value] of entries) {
      const resolved = resolve(value);
      if (resolved !== noValue) out[key] = resolved;
    }
    return out;
  };
  const keep = <T extends { Condition?: string }>(items: Record<string, T>) =>
    Object.fromEntries(Object.entries(items).filter(([, x]) => !x.Condition || condition(x.Condition)));
  return {
    Parameters: t.Parameters,
    Conditions: t.Conditions,
    Resources: resolve(keep(t.Resources)) as Record<string, Resource>,
    Outputs: resolve(keep(t.Outputs as Record<string, { Condition?: string }>)) as Record<string, unknown>,
  };
}

/** Every identity policy on a role or attached to it by an AWS::IAM::Policy/ManagedPolicy, unresolved. */
export function policiesOf(t: Template, role: string): PolicyDocument[] {
  const inline = list(resource(t, role).Properties.Policies) as { PolicyDocument: PolicyDocument }[];
  const attached = Object.values(t.Resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy' || r.Type === 'AWS::IAM::ManagedPolicy')
    .filter((r) =>
      list(r.Properties.Roles).some((ref) => JSON.stringify(ref) === JSON.stringify({ Ref: role })),
    )
    .map((r) => r.Properties.PolicyDocument as PolicyDocument);
  return [...inline.map((p) => p.PolicyDocument), ...attached];
}
