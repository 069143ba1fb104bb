import type { TestProject } from 'vitest/node';
import { startMoto } from './moto.js';
import { MotoSetupError } from './moto-setup.js';

declare module 'vitest' {
  export interface ProvidedContext {
    motoUrl: string;
  }
}

/** One moto_server for the whole run; test files isolate themselves with their own account id. */
export default async function setup(project: TestProject) {
  // Without moto_server this sets one up, or says in one line what to install and stops the run.
  const moto = await startMoto().catch((error: unknown) => {
    if (!(error instanceof MotoSetupError)) throw error;
    process.stderr.write(`fleetbot tests: ${error.message}\n`);
    process.exit(1);
  });
  project.provide('motoUrl', moto.url);
  return async () => {
    await moto.stop();
  };
}
