import { createHash } from 'node:crypto';
import { describeTargets, parseTargets } from './targets.js';

/** One fleet-wide change an admin asked for: a deploy, or a patch scan or install. */
export interface RolloutRequest {
  operation: 'deploy' | 'patch-scan' | 'patch-install';
  /** Deploys only; matches versionPattern. */
  version?: string;
  /** Patch installs only. */
  reboot: 'if-needed' | 'never';
  /** The target expression as typed (already validated); parsed again where it is used. */
  targets: string;
  /** `N` or `N%` of the matched instances. */
  concurrency: string;
  maxErrors: string;
  canary: number;
}

/** Two identical requests share this key, so a repeated /deploy finds the first one. */
export function rolloutKey(request: RolloutRequest): string {
  const { operation, version, reboot, targets, concurrency, maxErrors, canary } = request;
  return createHash('sha256')
    .update(JSON.stringify([operation, version, reboot, targets, concurrency, maxErrors, canary]))
    .digest('hex')
    .slice(0, 24);
}

export function rolloutTitle(request: RolloutRequest): string {
  const targets = parseTargets(request.targets);
  const what =
    request.operation === 'deploy'
      ? `Deploy ${request.version}`
      : request.operation === 'patch-scan'
        ? 'Patch scan'
        : `Patch install (reboot ${request.reboot})`;
  return `${what} to ${targets ? describeTargets(targets) : request.targets}`;
}
