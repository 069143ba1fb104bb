import { GetParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { describe, expect, inject, it } from 'vitest';
import { testAccountId, withAccount } from './aws-account.js';
import { startMoto } from './moto.js';

describe('moto launcher', () => {
  it('when started, then it answers and stop leaves no process behind', async () => {
    const moto = await startMoto();
    const res = await fetch(`${moto.url}/moto-api/data.json`);
    expect(res.status).toBe(200);
    await moto.stop();
    await expect(fetch(`${moto.url}/moto-api/data.json`)).rejects.toThrow();
  });

  it('when two accounts write the same parameter name, then each sees only its own', async () => {
    const base = { region: 'us-east-1', endpoint: inject('motoUrl'), maxAttempts: 1 };
    const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
    const a = withAccount(new SSMClient({ ...base, credentials }), testAccountId());
    const b = withAccount(new SSMClient({ ...base, credentials }), testAccountId());
    await a.send(new PutParameterCommand({ Name: '/iso/x', Value: 'from-a', Type: 'String' }));
    const got = await a.send(new GetParameterCommand({ Name: '/iso/x' }));
    expect(got.Parameter?.Value).toBe('from-a');
    await expect(b.send(new GetParameterCommand({ Name: '/iso/x' }))).rejects.toMatchObject({
      name: 'ParameterNotFound',
    });
  });
});
