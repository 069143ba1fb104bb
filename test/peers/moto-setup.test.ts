import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { composeFile, motoRequirement, motoVersion } from './moto-setup.js';

describe('the pinned moto version', () => {
  it('when Docker runs the emulator, then it runs the same moto release as the virtualenv would', () => {
    const compose = parse(readFileSync(composeFile, 'utf8')) as { services: { moto: { image: string } } };
    expect(compose.services.moto.image).toBe(`motoserver/moto:${motoVersion}`);
    expect(motoRequirement).toBe(`moto[server]==${motoVersion}`);
  });
});
