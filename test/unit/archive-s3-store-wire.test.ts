import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { sdkObjectStore } from '../../functions/archive/s3/store';

// What the store puts on the wire, seen by a loopback HTTP server standing in for S3.
const seen: Array<{ method: string; headers: IncomingHttpHeaders; bytes: number }> = [];
const server = createServer((request, response) => {
  let bytes = 0;
  request.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
  });
  request.on('end', () => {
    seen.push({ method: request.method!, headers: request.headers, bytes });
    response.writeHead(200, { etag: '"x"' }).end();
  });
});
const saved = { ...process.env };

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  Object.assign(process.env, {
    AWS_ENDPOINT_URL_S3: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_REGION: 'us-east-1',
  });
});
afterAll(async () => {
  process.env = saved;
  await new Promise((resolve) => server.close(resolve));
});

it('uploads each object as it is, without the SDK computing a checksum of it (the read-back verifies every object)', async () => {
  const store = await sdkObjectStore({ bucket: 'hk-test' });
  const body = new Uint8Array(100_000).map((_, i) => i & 255);
  await store.put('p/_pending/x.parquet', body, { checksum: 'abc' });
  const put = seen.find((request) => request.method === 'PUT')!;
  expect(put.bytes).toBe(body.byteLength);
  expect(Object.keys(put.headers).filter((name) => name.startsWith('x-amz-checksum') || name === 'x-amz-trailer')).toEqual([]);
  expect(put.headers['content-encoding'] ?? '').not.toContain('aws-chunked');
  expect(put.headers['x-amz-meta-checksum']).toBe('abc');
});
