import type { TestProject } from 'vitest/node';
import { startMoto } from './moto.js';

declare module 'vitest' {
  export interface ProvidedContext {
    motoUrl: string;
  }
}

/** One moto_server for the whole run; test files isolate themselves with their own account id. */
export default async function setup(project: TestProject) {
  const moto = await startMoto();
  project.provide('motoUrl', moto.url);
  return async () => {
    await moto.stop();
  };
}
