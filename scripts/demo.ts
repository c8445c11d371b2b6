import pg from 'pg';
import { seedDemo as seedDemoTables } from '../functions/demo-seed/seed';

/** Recreates the demo schema in the database at `url` (see functions/demo-seed/seed.ts). */
export async function seedDemo(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url, application_name: 'pg-housekeeper/demo-seed' });
  await client.connect();
  try {
    await seedDemoTables(client);
  } finally {
    await client.end();
  }
}
