import { z } from 'zod';
import { formatElapsed } from '../../core/durations.js';
import { defineCommand } from '../command.js';
import type { BotDeps } from '../deps.js';

/** The admins' view of every member's server; acting on one is /provision-for, /destroy-for and /session. */

const filterArg = z
  .string()
  .trim()
  .regex(
    /^[a-z0-9.-]{0,32}$/i,
    'A filter is a state, a Telegram user id, an instance id or a version (letters, digits, . and -).',
  );

export const fleet = defineCommand<BotDeps, typeof filterArg>({
  name: 'fleet',
  readOnly: true,
  summary: 'list fleet instances with state, version, age and SSM agent',
  usage: '[state | user id | instance id | version]',
  args: filterArg,
  requires: 'admin',
  async run({ args: filter, reply }, deps) {
    const { instances, agentsOnline: online } = await deps.fleetView.snapshot();
    const shown = instances.filter(
      (i) => !filter || i.state === filter || i.userId === filter || i.id === filter || i.version === filter,
    );
    if (shown.length === 0) {
      await reply.send(filter ? `No instance matches ${filter}.` : 'The fleet has no instances yet.');
      return;
    }
    const counts = new Map<string, number>();
    for (const i of shown) counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
    const now = deps.now().getTime();
    const rows = shown
      .slice(0, 50)
      .map((i) =>
        [
          i.userId.padEnd(12),
          i.id.padEnd(20),
          i.state.padEnd(10),
          (i.version ?? '-').padEnd(10),
          (i.launchedAt ? formatElapsed(now - i.launchedAt.getTime()) : '-').padEnd(8),
          online.get(i.id) ? 'online' : 'offline',
        ].join(' '),
      );
    const summary = [...counts].map(([state, n]) => `${n} ${state}`).join(', ');
    const more = shown.length > 50 ? `\n… and ${shown.length - 50} more; narrow it with a filter.` : '';
    await reply.send(
      [
        `${shown.length} instance${shown.length === 1 ? '' : 's'}: ${summary}`,
        'user         instance             state      version    age      agent',
        ...rows,
      ].join('\n') + more,
    );
  },
});
