import { describe, expect, it } from 'vitest';
import { ownershipProblem } from '../../src/aws/fleet.js';

describe('ownershipProblem', () => {
  const tags = { app: 'fleetbot', env: 'prod', user: '42' };

  it('when the instance carries the member’s user and the fleet’s app and env tags, then there is none', () => {
    expect(ownershipProblem(tags, '42', 'prod')).toBeUndefined();
  });

  it('when any of the three tags differs or is missing, then it names that tag', () => {
    expect(ownershipProblem(tags, '43', 'prod')).toBe('it belongs to another user (user=42)');
    expect(ownershipProblem(tags, '42', 'dev')).toBe('it belongs to another environment (env=prod)');
    expect(ownershipProblem({ ...tags, app: undefined }, '42', 'prod')).toBe(
      'it is not a fleetbot instance (app=none)',
    );
    expect(ownershipProblem({ app: 'fleetbot', env: 'prod' }, '42', 'prod')).toBe(
      'it belongs to another user (user=none)',
    );
  });
});
