import { randomBytes } from 'node:crypto';
import { DateTime } from 'luxon';
import pg from 'pg';
import { afterAll, inject } from 'vitest';
import { databaseNow } from '../../shared/postgres';

export interface TestDatabase {
  url: string;
  name: string;
  /** A plain client on the test database; closed automatically after the file. */
  connect(applicationName?: string): Promise<pg.Client>;
}

/** A fresh database for this test file, dropped after it, so files run in parallel without touching each other. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = inject('pgUrl');
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = serverUrl.replace(/\/postgres$/, `/${name}`);
  const clients: pg.Client[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
    const cleanup = new pg.Client({ connectionString: serverUrl });
    await cleanup.connect();
    await cleanup.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await cleanup.end();
  });
  return {
    url,
    name,
    async connect(applicationName = 'test') {
      const client = new pg.Client({ connectionString: url, application_name: applicationName });
      client.on('error', () => {});
      await client.connect();
      clients.push(client);
      return client;
    },
  };
}

/** The start of the database's current UTC day: tests place partitions relative to the database clock. */
export async function databaseToday(client: pg.ClientBase): Promise<DateTime> {
  return DateTime.fromJSDate(await databaseNow(client), { zone: 'UTC' }).startOf('day');
}
