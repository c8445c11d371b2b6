import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import * as z from 'zod';
import { parseConfig } from '../../shared/config';
import { CatalogError, ConfigError, DeadlockError, LockTimeoutError, SchemaDriftError } from '../../shared/errors';
import { withLockRetry } from '../../shared/lock-retry';
import { TimeBudget } from '../../shared/time-budget';

describe('typed errors', () => {
  it('a bad config names its first field in `field` and every field in the message', () => {
    const schema = z.strictObject({ targets: z.array(z.strictObject({ premake: z.number().min(1), table: z.string() })) });
    const error = (() => {
      try {
        parseConfig(schema, { targets: [{ premake: 0 }] }, 'event');
      } catch (caught) {
        return caught;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({
      name: 'ConfigError',
      field: 'event.targets[0].premake',
      message: expect.stringMatching(/^event\.targets\[0\]\.premake: Too small: .*; event\.targets\[0\]\.table: .*$/),
    });
  });

  it('schema drift is a catalog error about an object', () => {
    const drift = new SchemaDriftError('app.orders_archive', 'drifted');
    expect(drift).toBeInstanceOf(CatalogError);
    expect(drift).toMatchObject({ name: 'SchemaDriftError', object: 'app.orders_archive' });
  });

  const failing = (codes: string[]) => {
    let call = 0;
    return async () => {
      throw Object.assign(new Error(`attempt ${call + 1}`), { code: codes[Math.min(call++, codes.length - 1)] });
    };
  };
  const client = { query: async () => ({ rows: [] }) } as unknown as pg.ClientBase;
  const retry = {
    client,
    action: 'attach app.events_p2026_11_24',
    relations: ['app.events'],
    attempts: 3,
    lockTimeoutMs: 50,
    budget: TimeBudget.unlimited(),
    initialBackoffMs: 1,
  };

  it('a deadlock on the last attempt is a DeadlockError, not a lock timeout', async () => {
    const error = await withLockRetry(retry, failing(['55P03', '40P01'])).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeadlockError);
    expect(error).not.toBeInstanceOf(LockTimeoutError);
    expect((error as Error).message).toMatch(/^attach app\.events_p2026_11_24: deadlocked on 3 attempt\(s\)/);
  });

  it('lock_timeout on every attempt is a LockTimeoutError', async () => {
    const error = await withLockRetry(retry, failing(['55P03'])).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect((error as Error).message).toMatch(/could not get a lock within 50 ms on 3 attempt\(s\)/);
  });
});
