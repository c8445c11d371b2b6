import { describe, expect, it } from 'vitest';
import { configFromSecret, configFromUrl } from '../../shared/db';
import { ConfigError } from '../../shared/errors';

const secret = { host: 'db.cluster-abc.eu-west-1.rds.amazonaws.com', port: 5432, username: 'app', password: 'pw', dbname: 'main' };

describe('connection settings', () => {
  it('verifies TLS certificates for any non-loopback host, with an optional CA bundle', () => {
    expect(configFromSecret(secret, 'partition', { kind: 'secret', secretId: 'x' })).toMatchObject({
      ssl: { rejectUnauthorized: true },
      application_name: 'pg-housekeeper/partition',
      database: 'main',
    });
    const bundle = new URL('../../package.json', import.meta.url).pathname; // any readable file stands in for a PEM
    const withCa = configFromSecret(secret, 'archive', { kind: 'secret', secretId: 'x', caBundlePath: bundle });
    expect((withCa.ssl as { ca: string }).ca).toContain('pg-housekeeper');
    expect(configFromUrl('postgres://u:p@db.example.com:5432/main', 'rollup').ssl).toEqual({ rejectUnauthorized: true });
  });

  it('uses plain connections on loopback, and respects an explicit sslmode or TLS switch', () => {
    expect(configFromUrl('postgres://u:p@127.0.0.1:5432/main', 'partition').ssl).toBe(false);
    expect(configFromUrl('postgres://u:p@localhost/main', 'partition').ssl).toBe(false);
    expect(configFromUrl('postgres://u:p@db.example.com/main?sslmode=no-verify', 'partition').ssl).toBeUndefined();
    expect(configFromSecret(secret, 'partition', { kind: 'secret', secretId: 'x', tls: 'disable' }).ssl).toBe(false);
  });

  it('never repeats a malformed URL, which may hold a password', () => {
    const attempt = () => configFromUrl('postgres//user:hunter2@host', 'partition');
    expect(attempt).toThrowError(ConfigError);
    expect(attempt).toThrowError('database URL: is not a valid postgres:// URL');
    expect(() => configFromUrl('mysql://user:hunter2@host/db', 'partition')).toThrowError('must start with postgres:// (got mysql://)');
  });
});
