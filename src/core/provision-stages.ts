/**
 * What a member sees while their server comes up: one line, edited in place, the current stage
 * marked. Starting a stopped server shows the same readiness stages after its own first step.
 */
export const provisionStages = ['launching', 'running', 'health checks', 'bootstrapping', 'ready'] as const;
export const startStages = ['starting', 'running', 'health checks', 'bootstrapping', 'ready'] as const;
export type Stage = (typeof provisionStages)[number] | (typeof startStages)[number];

export function renderStages(stages: readonly Stage[], current: Stage): string {
  const at = stages.indexOf(current);
  return stages.map((s, i) => (i < at ? `${s} ✓` : i === at ? `${s}…` : s)).join(' → ');
}
