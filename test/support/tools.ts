import { spawnSync } from 'node:child_process';

/** Runs a command-line tool to its end: its exit status and everything it printed. */
export function runTool(command: string, args: string[]): { status: number | null; output: string } {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.error) throw new Error(`${command} could not run (is it installed?): ${result.error.message}`);
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}

/** shellcheck at style level, as bash: a clean script gives `{ status: 0, output: '' }`. */
export function shellcheck(file: string): { status: number | null; output: string } {
  return runTool('shellcheck', ['-s', 'bash', '-S', 'style', file]);
}
