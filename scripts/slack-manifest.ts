/**
 * Prints fleetbot's Slack app manifest (YAML), built from the command registry:
 *   npm run -s slack:manifest -- --url https://fleetbot.example.com [--command fleetbot] [--name fleetbot]
 *   npm run -s slack:manifest -- --socket-mode
 */
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { allCommands } from '../src/bot/commands/index.js';
import { buildSlackManifest, type ManifestOptions } from '../src/bot/slack-manifest.js';

const usage =
  'usage: npm run -s slack:manifest -- (--url https://host | --socket-mode) [--command fleetbot] [--name fleetbot]';

function options(argv: string[]): { manifest: ManifestOptions; argsLine: string } {
  const { values } = parseArgs({
    args: argv,
    options: {
      url: { type: 'string' },
      'socket-mode': { type: 'boolean', default: false },
      command: { type: 'string' },
      name: { type: 'string' },
    },
    strict: true,
    allowPositionals: false,
  });
  const socketMode = values['socket-mode'] === true;
  if (socketMode && values.url) throw new Error('--url and --socket-mode exclude each other');
  if (!socketMode && !values.url) throw new Error('--url is required (or --socket-mode)');
  const named = {
    ...(values.command ? { namespace: values.command } : {}),
    ...(values.name ? { appName: values.name } : {}),
  };
  const manifest: ManifestOptions = socketMode
    ? { ...named, socketMode: true }
    : { ...named, url: values.url ?? '' };
  return { manifest, argsLine: argv.join(' ') };
}

try {
  const { manifest, argsLine } = options(process.argv.slice(2));
  const yaml = stringify(buildSlackManifest(allCommands, manifest), { lineWidth: 0 });
  process.stdout.write(
    `# fleetbot's Slack app, generated from its command registry; do not edit by hand:\n#   npm run -s slack:manifest -- ${argsLine}\n${yaml}`,
  );
} catch (error) {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n${usage}\n`);
  process.exitCode = 2;
}
