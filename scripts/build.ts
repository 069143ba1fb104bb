/**
 * `npm run build`: compiles src/ to dist/ (or to the directory given as the only argument) for
 * `node dist/main.js`, then copies beside the compiled modules what src/ reads at run time through
 * import.meta.url (the UserData template src/aws/userdata.sh and the instance's scripts under
 * src/aws/instance/): tsc emits only what it compiles.
 *
 * Plain Node (it strips the types of this file itself), so building needs nothing but TypeScript.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const src = join(root, 'src');
const outDir = resolve(process.argv[2] ?? join(root, 'dist'));

// Emptied first, so a module deleted from src/ does not live on in the image.
if (relative(outDir, src) === '' || !relative(outDir, src).startsWith('..')) {
  process.stderr.write(`build: refusing to empty ${outDir}, which holds the sources\n`);
  process.exit(1);
}
rmSync(outDir, { recursive: true, force: true });

const typescript = dirname(createRequire(import.meta.url).resolve('typescript/package.json'));
const tsc = spawnSync(
  process.execPath,
  [join(typescript, 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', outDir],
  { stdio: 'inherit' },
);
if (tsc.status !== 0) process.exit(tsc.status ?? 1);

cpSync(src, outDir, {
  recursive: true,
  filter: (from) => statSync(from).isDirectory() || !from.endsWith('.ts'),
});
