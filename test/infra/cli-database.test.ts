import { describe, expect, it, vi } from 'vitest';
import { deployedPolicy } from '../../scripts/deployed';

// The config file with one database listed beside the sandbox, as a team's would be.
vi.mock('../../infra/housekeeping.config', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../infra/housekeeping.config')>();
  const orders = {
    id: 'orders',
    secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders-db-AbCdEf',
    jobs: { archive: original.housekeeping.archive },
  };
  return { ...original, databases: [...original.databases, orders] };
});

describe("the CLI's policy for a database of the fleet (--database)", () => {
  it("is that database's entry's policy, through JSON as its function ships it", async () => {
    const { housekeeping } = await import('../../infra/housekeeping.config');
    expect(await deployedPolicy('archive', 'orders')).toEqual(JSON.parse(JSON.stringify(housekeeping.archive!.policy)));
  });

  it('refuses a job the database does not deploy, and --deployed without a database once databases are listed', async () => {
    await expect(deployedPolicy('rollup', 'orders')).rejects.toThrowError(
      '--database: infra/housekeeping.config.ts deploys no rollup job for database orders',
    );
    await expect(deployedPolicy('archive')).rejects.toThrowError(
      '--deployed: infra/housekeeping.config.ts lists databases (orders): name one with --database ID',
    );
    await expect(deployedPolicy('archive', 'billing')).rejects.toThrowError(
      '--database: infra/housekeeping.config.ts lists no database "billing" (it lists demo, orders)',
    );
  });
});
