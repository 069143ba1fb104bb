import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * bull-board's packages are released together and talk to each other through shared classes and
 * a UI bundle of the same version: a bump of one alone installs a second copy of another and the
 * dashboard breaks at run time. So every @bull-board/* package must resolve to one version.
 */

const root = join(import.meta.dirname, '..', '..');
const scope = '@bull-board/';

interface Manifest {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

/** Every installed copy of a @bull-board package, nested ones included. */
function installedCopies(nodeModules: string, found: { path: string; manifest: Manifest }[] = []) {
  if (!existsSync(nodeModules)) return found;
  for (const entry of readdirSync(nodeModules, { withFileTypes: true })) {
    if (!entry.isDirectory() || entry.name.startsWith('.')) continue;
    const packageDirs = entry.name.startsWith('@')
      ? readdirSync(join(nodeModules, entry.name), { withFileTypes: true })
          .filter((e) => e.isDirectory())
          .map((e) => join(nodeModules, entry.name, e.name))
      : [join(nodeModules, entry.name)];
    for (const dir of packageDirs) {
      const manifestPath = join(dir, 'package.json');
      if (entry.name === '@bull-board' && existsSync(manifestPath))
        found.push({ path: relative(root, dir), manifest: readJson<Manifest>(manifestPath) });
      installedCopies(join(dir, 'node_modules'), found);
    }
  }
  return found;
}

/** Where Node finds `name` when required from `fromDir`: the nearest node_modules up the tree. */
function resolvedFrom(fromDir: string, name: string): Manifest | undefined {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name, 'package.json');
    if (existsSync(candidate)) return readJson<Manifest>(candidate);
    if (dirname(dir) === dir) return undefined;
  }
}

const scoped = (deps: Record<string, string> | undefined) =>
  Object.entries(deps ?? {}).filter(([name]) => name.startsWith(scope));

describe('@bull-board packages', () => {
  const manifest = readJson<Manifest>(join(root, 'package.json'));
  const pins = [...scoped(manifest.dependencies), ...scoped(manifest.devDependencies)];
  const pinned = pins[0]?.[1];

  it('when package.json names them, then each is pinned to one exact version, the same for all', () => {
    expect(pins.map(([name]) => name)).toEqual(
      expect.arrayContaining(['@bull-board/api', '@bull-board/express']),
    );
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    expect(Object.fromEntries(pins)).toEqual(Object.fromEntries(pins.map(([name]) => [name, pinned])));
  });

  it('when installed, then every copy in node_modules, nested ones included, is that version', () => {
    const copies = installedCopies(join(root, 'node_modules'));
    expect(copies.map((c) => c.manifest.name)).toEqual(expect.arrayContaining(pins.map(([name]) => name)));
    expect(copies.map((c) => [c.path, c.manifest.version])).toEqual(copies.map((c) => [c.path, pinned]));
  });

  it('when one package requires another, then it resolves to the pinned version', () => {
    for (const copy of installedCopies(join(root, 'node_modules'))) {
      const wanted = [...scoped(copy.manifest.dependencies), ...scoped(copy.manifest.peerDependencies)];
      for (const [name] of wanted) {
        expect({
          from: copy.path,
          name,
          version: resolvedFrom(join(root, copy.path), name)?.version,
        }).toEqual({
          from: copy.path,
          name,
          version: pinned,
        });
      }
    }
  });

  it('when CI installs from the lockfile, then it locks every copy to that version', () => {
    const lock = readJson<{ packages: Record<string, { version?: string }> }>(
      join(root, 'package-lock.json'),
    );
    const locked = Object.entries(lock.packages)
      .filter(([path]) => /(^|\/)node_modules\/@bull-board\/[^/]+$/.test(path))
      .map(([path, entry]) => [path, entry.version]);
    expect(locked.length).toBeGreaterThanOrEqual(pins.length);
    expect(locked).toEqual(locked.map(([path]) => [path, pinned]));
  });
});
