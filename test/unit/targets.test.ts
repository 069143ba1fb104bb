import { describe, expect, it } from 'vitest';
import { describeTargets, matchesTargets, parseTargets, type Targetable } from '../../src/core/targets.js';

const id = (n: number) => `i-${n.toString(16).padStart(17, '0')}`;
const userIds = (count: number) => Array.from({ length: count }, (_, i) => String(10_000 + i));

describe('parseTargets', () => {
  it('when given each form of the grammar, then it parses to that kind', () => {
    expect(parseTargets('all')).toEqual({ kind: 'all' });
    expect(parseTargets('user:42')).toEqual({ kind: 'users', userIds: ['42'] });
    expect(parseTargets('tag:env=prod')).toEqual({ kind: 'tag', key: 'env', value: 'prod' });
    expect(parseTargets('tag:aws:cloudformation/stack-name=fleet.v2_a')).toEqual({
      kind: 'tag',
      key: 'aws:cloudformation/stack-name',
      value: 'fleet.v2_a',
    });
    expect(parseTargets('i-0123abcd,i-0123456789abcdef0')).toEqual({
      kind: 'instances',
      instanceIds: ['i-0123abcd', 'i-0123456789abcdef0'],
    });
  });

  it('when an id is repeated, then it is listed once', () => {
    expect(parseTargets('user:1,2,1,2')).toEqual({ kind: 'users', userIds: ['1', '2'] });
    expect(parseTargets(`${id(1)},${id(1)}`)).toEqual({ kind: 'instances', instanceIds: [id(1)] });
  });

  it('when a list is at its limit, then it parses, and one more does not', () => {
    expect(parseTargets(`user:${userIds(200).join(',')}`)).toMatchObject({ kind: 'users' });
    expect(parseTargets(`user:${userIds(201).join(',')}`)).toBeUndefined();
    const instances = Array.from({ length: 1001 }, (_, i) => id(i));
    expect(parseTargets(instances.slice(0, 1000).join(','))).toMatchObject({ kind: 'instances' });
    expect(parseTargets(instances.join(','))).toBeUndefined();
  });

  it('when the text is anything else, then it is refused', () => {
    for (const text of [
      '',
      ' all',
      'ALL',
      'all;reboot',
      'user:',
      'user:abc',
      'user:1,',
      'user:1 2',
      `user:${'1'.repeat(17)}`,
      'tag:env',
      'tag:env=',
      'tag:=prod',
      'tag:e nv=prod',
      'tag:env=$(id)',
      `tag:${'k'.repeat(65)}=v`,
      `tag:k=${'v'.repeat(129)}`,
      'i-0123abc',
      'i-0123ABCD',
      `i-${'0'.repeat(18)}`,
      'i-0123abcd,',
      'i-0123abcd,all',
      'i-0123abcd\ni-0123abce',
    ])
      expect(parseTargets(text), JSON.stringify(text)).toBeUndefined();
  });
});

describe('describeTargets', () => {
  it('when targets are described, then counts agree with their noun', () => {
    expect(describeTargets({ kind: 'all' })).toBe('all running fleet instances');
    expect(describeTargets({ kind: 'users', userIds: ['1'] })).toBe('the servers of 1 member');
    expect(describeTargets({ kind: 'users', userIds: ['1', '2'] })).toBe('the servers of 2 members');
    expect(describeTargets({ kind: 'tag', key: 'env', value: 'prod' })).toBe('instances tagged env=prod');
    expect(describeTargets({ kind: 'instances', instanceIds: [id(1)] })).toBe('1 named instance');
    expect(describeTargets({ kind: 'instances', instanceIds: [id(1), id(2)] })).toBe('2 named instances');
  });
});

describe('matchesTargets', () => {
  const server: Targetable = { id: id(1), userId: '42', state: 'running', tags: { env: 'prod', user: '42' } };

  it('when the instance is running, then each kind matches on its own field', () => {
    expect(matchesTargets(server, { kind: 'all' })).toBe(true);
    expect(matchesTargets(server, { kind: 'users', userIds: ['7', '42'] })).toBe(true);
    expect(matchesTargets(server, { kind: 'users', userIds: ['7'] })).toBe(false);
    expect(matchesTargets(server, { kind: 'tag', key: 'env', value: 'prod' })).toBe(true);
    expect(matchesTargets(server, { kind: 'tag', key: 'env', value: 'dev' })).toBe(false);
    expect(matchesTargets(server, { kind: 'tag', key: 'team', value: 'prod' })).toBe(false);
    expect(matchesTargets(server, { kind: 'instances', instanceIds: [id(2), id(1)] })).toBe(true);
    expect(matchesTargets(server, { kind: 'instances', instanceIds: [id(2)] })).toBe(false);
  });

  it('when the instance has no tags, then a tag target does not match it', () => {
    expect(matchesTargets({ ...server, tags: undefined }, { kind: 'tag', key: 'env', value: 'prod' })).toBe(
      false,
    );
  });

  it('when the instance is not running, then no target matches it, not even all', () => {
    for (const state of ['pending', 'stopping', 'stopped', 'shutting-down', 'terminated']) {
      const instance = { ...server, state };
      expect(matchesTargets(instance, { kind: 'all' }), state).toBe(false);
      expect(matchesTargets(instance, { kind: 'users', userIds: ['42'] }), state).toBe(false);
      expect(matchesTargets(instance, { kind: 'tag', key: 'env', value: 'prod' }), state).toBe(false);
      expect(matchesTargets(instance, { kind: 'instances', instanceIds: [id(1)] }), state).toBe(false);
    }
  });
});
