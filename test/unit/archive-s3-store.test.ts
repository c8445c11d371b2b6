import { CopyObjectCommand, DeleteObjectsCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { sdkObjectStore } from '../../functions/archive/s3/store';

// S3 refuses a DeleteObjects of more than 1,000 keys (our test server does not), and answers 200
// with per-key errors when it could not delete some: both are only visible against S3's contract.
const s3 = mockClient(S3Client);
afterEach(() => s3.reset());

describe('deleting many objects', () => {
  it('asks S3 for at most 1,000 keys per request, every key once', async () => {
    s3.on(DeleteObjectsCommand).resolves({});
    const store = await sdkObjectStore({ bucket: 'b' });
    const keys = Array.from({ length: 2_345 }, (_, i) => `k/${i}`);
    await store.deleteMany(keys);
    const sent = s3.commandCalls(DeleteObjectsCommand).map((call) => call.args[0].input.Delete!.Objects!.map((o) => o.Key));
    expect(sent.map((chunk) => chunk.length)).toEqual([1000, 1000, 345]);
    expect(sent.flat()).toEqual(keys);
    await store.deleteMany([]);
    expect(s3.commandCalls(DeleteObjectsCommand)).toHaveLength(3);
  });

  it('fails naming a key S3 reported it could not delete', async () => {
    s3.on(DeleteObjectsCommand).resolves({ Errors: [{ Key: 'k/7', Code: 'AccessDenied', Message: 'Access Denied' }] });
    const store = await sdkObjectStore({ bucket: 'b' });
    await expect(store.deleteMany(['k/6', 'k/7'])).rejects.toThrow('S3 did not delete 1 of 2 object(s), e.g. k/7: AccessDenied Access Denied');
  });
});

describe('copying to the final key', () => {
  const refusal = (status: number, name: string) =>
    new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode: status }, message: name });

  it('asks S3 not to overwrite (If-None-Match: *), and says when an object was already there', async () => {
    s3.on(CopyObjectCommand).resolvesOnce({}).rejectsOnce(refusal(412, 'PreconditionFailed'));
    const store = await sdkObjectStore({ bucket: 'b' });
    expect(await store.copy('p/_pending/x', 'p/x')).toBe('copied');
    expect(await store.copy('p/_pending/y', 'p/y')).toBe('exists');
    const sent = s3.commandCalls(CopyObjectCommand).map((call) => call.args[0].input);
    expect(sent.map((input) => [input.Key, input.CopySource, input.IfNoneMatch])).toEqual([
      ['p/x', 'b/p/_pending/x', '*'],
      ['p/y', 'b/p/_pending/y', '*'],
    ]);
  });

  it('retries a copy S3 answered 409 (a concurrent write to the key), and fails on anything else', async () => {
    s3.on(CopyObjectCommand).rejectsOnce(refusal(409, 'ConditionalRequestConflict')).resolvesOnce({});
    const store = await sdkObjectStore({ bucket: 'b' });
    expect(await store.copy('p/_pending/x', 'p/x')).toBe('copied');
    expect(s3.commandCalls(CopyObjectCommand)).toHaveLength(2);
    s3.reset();
    s3.on(CopyObjectCommand).rejects(refusal(403, 'AccessDenied'));
    await expect(store.copy('p/_pending/x', 'p/x')).rejects.toThrow('AccessDenied');
  });
});
