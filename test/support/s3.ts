import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DuckDBInstance } from '@duckdb/node-api';
import S3rver from 's3rver';
import { afterAll } from 'vitest';

export interface TestS3 {
  endpoint: string;
  bucket: string;
  client: S3Client;
  /** The environment a job (in this process or a child) needs to reach the server. */
  env: Record<string, string>;
  /** Every key under `prefix`, sorted. */
  keys(prefix?: string): Promise<string[]>;
  /** Deletes every object in the bucket (a test's clean start). */
  empty(): Promise<void>;
  /** Copies every object under `prefix` into a fresh local folder (same key layout) and returns it. */
  download(prefix: string): Promise<string>;
  /** Copies the given objects into a fresh local folder (same key layout) and returns it. */
  downloadKeys(keys: string[]): Promise<string>;
  /**
   * Resolves once the server has had no open connection on two checks in a row: requests a killed
   * process had sent are done, so none reads a file the next run deletes.
   */
  settled(): Promise<void>;
}

/**
 * An S3-compatible server (s3rver) on a free loopback port with a temporary directory, for this
 * test file; stopped and removed after it. The job's SDK client reaches it through
 * AWS_ENDPOINT_URL_S3, which is also set in this process (each test file runs in its own worker).
 */
export async function startTestS3(bucket = 'hk-archive'): Promise<TestS3> {
  const directory = mkdtempSync(join(tmpdir(), 'hk-s3-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory });
  const { port } = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  const env = {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
  };
  Object.assign(process.env, env);
  const client = new S3Client({
    endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const downloads: string[] = [];
  afterAll(async () => {
    client.destroy();
    await server.close();
    rmSync(directory, { recursive: true, force: true });
    for (const dir of downloads) rmSync(dir, { recursive: true, force: true });
  });
  const keys = async (prefix = '') => {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const object of page.Contents ?? []) out.push(object.Key!);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  };
  const downloadKeys = async (found: string[]) => {
    const dir = mkdtempSync(join(tmpdir(), 'hk-s3-read-'));
    downloads.push(dir);
    for (const key of found) {
      const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const path = join(dir, key);
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, await object.Body!.transformToByteArray());
    }
    return dir;
  };
  const empty = async () => {
    for (const key of await keys()) await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  };
  const http = (server as unknown as { httpServer: import('node:http').Server }).httpServer;
  const settled = async () => {
    const open = () => new Promise<number>((resolve, reject) => http.getConnections((error, count) => (error ? reject(error) : resolve(count))));
    for (let quiet = 0; quiet < 2; ) {
      quiet = (await open()) === 0 ? quiet + 1 : 0;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  };
  return { endpoint, bucket, client, env, keys, empty, downloadKeys, settled, download: async (prefix) => downloadKeys(await keys(prefix)) };
}

/** DuckDB (an independent Parquet reader): the rows of a query as JSON-friendly values (bigints and decimals as strings). */
export async function duckdb(query: string): Promise<Array<Record<string, unknown>>> {
  const instance = await DuckDBInstance.create(':memory:');
  const connection = await instance.connect();
  try {
    // DuckDB renders timestamptz in the process's zone; the evidence compares them in UTC, as Postgres's side does.
    await connection.run(`SET TimeZone = 'UTC'`);
    const result = await connection.runAndReadAll(query);
    return result.getRowObjectsJson() as Array<Record<string, unknown>>;
  } finally {
    connection.closeSync();
    instance.closeSync();
  }
}
