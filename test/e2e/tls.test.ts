import { X509Certificate } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duration } from 'aws-cdk-lib';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAMBDA_CA_CERTS } from '../../infra/job-function';
import { SHIPPED_CA_BUNDLE_FILE } from '../../shared/environment';
import { synthStack } from '../infra/synth';
import { startFakeSecretsManager } from '../support/fake-secrets-manager';
import { createCa, issueServerCert, startTlsPostgres, type TlsPostgres } from '../support/tls';
import { type Bundle, invokeBundle, synthesizeBundles } from './bundle-harness';

/**
 * Item: TLS to RDS. The server presents a certificate for a name (as RDS does for its endpoint)
 * signed by a CA of the suite's own (as RDS's are signed by the RDS CAs, which Node does not
 * trust by default). The bundle runs with exactly the template's environment, except that
 * NODE_EXTRA_CA_CERTS points at this CA instead of /var/runtime/ca-cert.pem.
 */
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:tls-db-AbCdEf';
const HOST = 'postgres.pg-housekeeper.test';

let server: TlsPostgres;
let fake: Awaited<ReturnType<typeof startFakeSecretsManager>>;
let bundle: Bundle;
let caPath: string;
let wrongCaPath: string;
let caPem: string;

beforeAll(async () => {
  const ca = createCa('pg-housekeeper test RDS CA');
  const dir = mkdtempSync(join(tmpdir(), 'hk-tls-'));
  caPath = join(dir, 'ca.pem');
  wrongCaPath = join(dir, 'other-ca.pem');
  caPem = ca.certPem;
  writeFileSync(caPath, ca.certPem);
  writeFileSync(wrongCaPath, createCa('some other CA').certPem);
  server = await startTlsPostgres(issueServerCert(ca, HOST));
  const admin = new pg.Client({
    host: '127.0.0.1',
    port: server.port,
    user: 'postgres',
    password: server.password,
    database: 'postgres',
    ssl: { ca: ca.certPem, servername: HOST },
  });
  await admin.connect();
  await admin.query(`CREATE SCHEMA app; CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)`);
  await admin.end();
  fake = await startFakeSecretsManager({
    [SECRET_ARN]: JSON.stringify({ host: HOST, port: server.port, username: 'postgres', password: server.password, dbname: 'postgres' }),
  });
  bundle = synthesizeBundles('Tls', SECRET_ARN, {
    partition: { schedule: { rate: Duration.hours(1) }, policy: { targets: [{ table: 'app.events', interval: 'day', premake: 2 }] } },
  }).partition!;
}, 120_000);

afterAll(async () => {
  await fake?.close();
  await server?.stop();
});

const invoke = (extraCaCerts: string, env: Record<string, string> = {}) =>
  invokeBundle(bundle, {}, { secretsManagerUrl: fake.url, hosts: [HOST], env: { NODE_EXTRA_CA_CERTS: extraCaCerts, ...env } });

describe('TLS to a database whose certificate chains to a private CA (RDS, Aurora)', () => {
  it('the template trusts the Lambda runtime CA file, and the bundle verifies the server through it', async () => {
    expect(bundle.environment.NODE_EXTRA_CA_CERTS).toBe(LAMBDA_CA_CERTS);
    expect(bundle.environment.PGHK_DB_TLS).toBeUndefined(); // verification stays on
    const { ok, result, stdout } = await invoke(caPath);
    expect(ok, stdout).toBe(true);
    expect(result.targets[0]).toMatchObject({ target: 'app.events', state: 'succeeded', counts: { created: 3 } });
  });

  it('fails with an error naming TLS and the host when the certificate does not chain to a trusted CA', async () => {
    const { ok, error, lines } = await invoke(wrongCaPath);
    expect(ok).toBe(false);
    expect(error).toMatch(/^database TLS: certificate verification failed for postgres\.pg-housekeeper\.test:\d+ \(UNABLE_TO_VERIFY_LEAF_SIGNATURE/);
    expect(lines.find((l) => l.message === 'cannot connect to the database')?.error).toMatch(/certificate verification failed/);
    // Without the variable (the template before this fix) Node trusts only public roots.
    const without = await invoke('');
    expect(without.error).toMatch(/^database TLS: certificate verification failed .*NODE_EXTRA_CA_CERTS is not set/);
  });

  it('an extra PGHK_DB_CA_BUNDLE adds to the trusted CAs instead of replacing them', async () => {
    // The right CA only in NODE_EXTRA_CA_CERTS, an unrelated one in the bundle: a `ca` option that
    // replaced the defaults would now fail, as it would for RDS Proxy's public certificates.
    const { ok, stdout } = await invoke(caPath, { PGHK_DB_CA_BUNDLE: wrongCaPath });
    expect(ok, stdout).toBe(true);
  });
});

/** Subjects (their CN) of every certificate in a PEM bundle. */
function subjectsOf(pem: string): string[] {
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return certs.map((cert) => new X509Certificate(cert).subject.split('\n').find((line) => line.startsWith('CN=')) ?? '');
}

describe("the RDS CAs ship with the functions: the Lambda runtime's CA file is not enough", () => {
  // Lambda's /var/runtime/ca-cert.pem has been reported without the RDS G1 CAs (rds-ca-rsa2048-g1,
  // the default CA of new RDS instances and Aurora clusters; aws/aws-lambda-base-images#123), so a
  // function trusting only it cannot verify the sandbox's database or any recent RDS instance.
  const G1_ROOTS = ['eu-west-1', 'us-east-1', 'ap-northeast-2'].flatMap((region) =>
    ['RSA2048', 'RSA4096', 'ECC384'].map((kind) => `CN=Amazon RDS ${region} Root CA ${kind} G1`),
  );

  it('every function of a deploy, the sandbox seed included, carries the RDS CA bundle beside its code', () => {
    const subjects = subjectsOf(readFileSync(join(bundle.dir, SHIPPED_CA_BUNDLE_FILE), 'utf8'));
    expect(subjects).toEqual(expect.arrayContaining(G1_ROOTS));
    const sandbox = synthStack('TlsSandbox', { target: { kind: 'demo' } }, { nag: false, outdir: mkdtempSync(join(tmpdir(), 'hk-cdk-')) });
    const ours = Object.entries(sandbox.json.Resources).filter(
      ([, r]) =>
        r.Type === 'AWS::Lambda::Function' && (r.Properties.Environment as { Variables?: Record<string, string> })?.Variables?.PGHK_DB_SECRET_ARN,
    );
    expect(ours).toHaveLength(4); // three jobs and the seed
    for (const [logicalId] of ours) {
      const shipped = join(sandbox.assetDir(logicalId), SHIPPED_CA_BUNDLE_FILE);
      expect(existsSync(shipped), logicalId).toBe(true);
      expect(subjectsOf(readFileSync(shipped, 'utf8')), logicalId).toEqual(expect.arrayContaining(G1_ROOTS));
    }
  }, 120_000);

  it('the bundle trusts the CA file it ships, with the runtime CA file lacking the database CA', async () => {
    // The same bundle, its shipped RDS bundle standing for the test CA; NODE_EXTRA_CA_CERTS as the
    // template sets it, pointing at a runtime file that does not hold that CA.
    const copy = mkdtempSync(join(tmpdir(), 'hk-bundle-'));
    cpSync(bundle.dir, copy, { recursive: true });
    writeFileSync(join(copy, SHIPPED_CA_BUNDLE_FILE), caPem);
    const { ok, result, stdout } = await invokeBundle(
      { dir: copy, environment: bundle.environment },
      {},
      { secretsManagerUrl: fake.url, hosts: [HOST], env: { NODE_EXTRA_CA_CERTS: wrongCaPath } },
    );
    expect(ok, stdout).toBe(true);
    expect(result.targets[0]).toMatchObject({ target: 'app.events', state: 'succeeded' });
  });
});
