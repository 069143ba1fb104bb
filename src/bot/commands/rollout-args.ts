import { z } from 'zod';
import { type Amount, parseAmount } from '../../core/rollout.js';
import type { RolloutRequest } from '../../core/rollout-request.js';
import { parseTargets } from '../../core/targets.js';
import { isVersion } from '../../core/version.js';

/**
 * Parses `/deploy` and `/patch` arguments strictly: every token must match its own pattern, so
 * shell metacharacters, Slack markup and newlines never get further than an error that echoes them
 * back quoted and cut short.
 */

export type ParsedRollout = Omit<RolloutRequest, 'concurrency' | 'maxErrors'> & {
  concurrency?: string;
  maxErrors?: string;
};

/** Quoted, escaped and cut, so a bad input is shown, never interpreted. */
export function echo(text: string): string {
  const cut = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  return JSON.stringify(cut);
}

function amountIn(text: string, min: number): Amount | undefined {
  const amount = parseAmount(text);
  if (!amount) return undefined;
  if (amount.kind === 'count' && (amount.value < min || amount.value > 10_000)) return undefined;
  return amount;
}

function parseRollout(text: string, ctx: z.RefinementCtx, operation: 'deploy' | 'patch'): ParsedRollout {
  const fail = (message: string): never => {
    ctx.addIssue({ code: 'custom', message });
    return z.NEVER as never;
  };
  if (/[\r\n]/.test(text)) return fail('Put the whole command on one line.');
  const tokens = text.trim() === '' ? [] : text.trim().split(/\s+/);
  const first = tokens.shift();
  const request: ParsedRollout = { operation: 'deploy', reboot: 'never', targets: 'all', canary: 0 };
  if (operation === 'deploy') {
    if (!first) return fail('Give the version to deploy, such as v2.3.0.');
    if (!isVersion(first))
      return fail(`${echo(first)} is not a version; use semver such as v2.3.0 or 2.3.0-rc.1.`);
    request.version = first;
  } else {
    if (first !== 'scan' && first !== 'install')
      return fail(first ? `${echo(first)} is not scan or install.` : 'Say scan or install.');
    request.operation = first === 'scan' ? 'patch-scan' : 'patch-install';
  }
  if (tokens[0] && !tokens[0].startsWith('--')) {
    const targets = tokens.shift() ?? '';
    if (!parseTargets(targets))
      return fail(
        `${echo(targets)} is not a target; use all, user:<id>[,<id>], tag:<key>=<value> or i-…[,i-…].`,
      );
    request.targets = targets;
  }
  const seen = new Set<string>();
  while (tokens.length > 0) {
    const flag = tokens.shift() ?? '';
    const value = tokens.shift();
    if (seen.has(flag)) return fail(`${echo(flag)} is given twice.`);
    seen.add(flag);
    if (value === undefined) return fail(`${echo(flag)} needs a value.`);
    if (flag === '--concurrency') {
      if (!amountIn(value, 1))
        return fail(`--concurrency takes a count from 1 to 10000 or a percentage, not ${echo(value)}.`);
      request.concurrency = value;
    } else if (flag === '--max-errors') {
      if (!amountIn(value, 0))
        return fail(`--max-errors takes a count from 0 to 10000 or a percentage, not ${echo(value)}.`);
      request.maxErrors = value;
    } else if (flag === '--canary' && operation === 'deploy') {
      if (!/^\d{1,4}$/.test(value) || Number(value) < 1 || Number(value) > 1000)
        return fail(`--canary takes a count from 1 to 1000, not ${echo(value)}.`);
      request.canary = Number(value);
    } else if (flag === '--reboot' && operation === 'patch') {
      if (value !== 'if-needed' && value !== 'never')
        return fail(`--reboot is if-needed or never, not ${echo(value)}.`);
      if (request.operation !== 'patch-install') return fail('--reboot only applies to patch install.');
      request.reboot = value;
    } else {
      return fail(`${echo(flag)} is not an option of /${operation}.`);
    }
  }
  return request;
}

export const deployArgs = z.string().transform((text, ctx) => parseRollout(text, ctx, 'deploy'));
export const patchArgs = z.string().transform((text, ctx) => parseRollout(text, ctx, 'patch'));
