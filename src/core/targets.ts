/**
 * Which fleet instances a command aims at. Only running instances carrying the fleet tags are
 * ever targeted; this grammar only narrows that set.
 *   all | user:<id>[,<id>…] | tag:<key>=<value> | i-…[,i-…]
 */
export type Targets =
  | { kind: 'all' }
  | { kind: 'users'; userIds: string[] }
  | { kind: 'tag'; key: string; value: string }
  | { kind: 'instances'; instanceIds: string[] };

export function parseTargets(text: string): Targets | undefined {
  if (text === 'all') return { kind: 'all' };
  const users = /^user:(\d{1,16}(?:,\d{1,16}){0,199})$/.exec(text);
  if (users?.[1]) return { kind: 'users', userIds: [...new Set(users[1].split(','))] };
  const tag = /^tag:([A-Za-z0-9_.:/-]{1,64})=([A-Za-z0-9_.:/-]{1,128})$/.exec(text);
  if (tag?.[1] && tag[2]) return { kind: 'tag', key: tag[1], value: tag[2] };
  if (/^i-[0-9a-f]{8,17}(,i-[0-9a-f]{8,17}){0,999}$/.test(text))
    return { kind: 'instances', instanceIds: [...new Set(text.split(','))] };
  return undefined;
}

export function describeTargets(targets: Targets): string {
  switch (targets.kind) {
    case 'all':
      return 'all running fleet instances';
    case 'users':
      return `the servers of ${targets.userIds.length} member${targets.userIds.length > 1 ? 's' : ''}`;
    case 'tag':
      return `instances tagged ${targets.key}=${targets.value}`;
    case 'instances':
      return `${targets.instanceIds.length} named instance${targets.instanceIds.length > 1 ? 's' : ''}`;
  }
}

export interface Targetable {
  id: string;
  userId: string;
  state: string;
  tags?: Record<string, string | undefined>;
}

export function matchesTargets(instance: Targetable, targets: Targets): boolean {
  if (instance.state !== 'running') return false;
  switch (targets.kind) {
    case 'all':
      return true;
    case 'users':
      return targets.userIds.includes(instance.userId);
    case 'tag':
      return instance.tags?.[targets.key] === targets.value;
    case 'instances':
      return targets.instanceIds.includes(instance.id);
  }
}
