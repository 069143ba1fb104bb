import type { Caller } from '../core/caller.js';
import { type Command, mayRun } from './command.js';

// biome-ignore lint/suspicious/noExplicitAny: a registry holds commands of every argument type
export type AnyCommand<Deps> = Command<Deps, any>;

export interface Registry<Deps> {
  find(name: string): AnyCommand<Deps> | undefined;
  /** Visible commands the caller may run, in registration order. */
  visibleTo(caller: Caller): AnyCommand<Deps>[];
  all(): readonly AnyCommand<Deps>[];
}

export function createRegistry<Deps>(commands: AnyCommand<Deps>[]): Registry<Deps> {
  const byName = new Map<string, AnyCommand<Deps>>();
  for (const command of commands) {
    for (const name of [command.name, ...(command.aliases ?? [])]) {
      if (!/^[a-z][a-z0-9-]{0,31}$/.test(name)) throw new Error(`invalid command name: ${name}`);
      if (byName.has(name)) throw new Error(`command registered twice: ${name}`);
      byName.set(name, command);
    }
  }
  return {
    find: (name) => byName.get(name.toLowerCase()),
    visibleTo: (caller) => commands.filter((c) => !c.hidden && mayRun(c.requires, caller)),
    all: () => commands,
  };
}
