import type { TestProject } from 'vitest/node';
import { startEmbeddedPostgres } from '../../scripts/embedded-postgres';

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}

/** One real Postgres for the whole run: temporary data directory, free port, removed at the end. */
export default async function setup(project: TestProject) {
  const server = await startEmbeddedPostgres({ quiet: false });
  project.provide('pgUrl', server.url);
  return async () => server.stop();
}
