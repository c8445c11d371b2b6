import { CopyObjectCommand, DeleteObjectsCommand, ListObjectsV2Command, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, describe, expect, it } from 'vitest';
import { commonPrefix, keyOrder, sdkObjectStore } from '../../functions/archive/s3/store';

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

describe('listing a range of keys', () => {
  const page = (keys: string[], next?: string) => ({
    Contents: keys.map((Key) => ({ Key })),
    IsTruncated: next !== undefined,
    NextContinuationToken: next,
  });

  it('starts just before the first key, keeps both ends, and asks for no page past the last key', async () => {
    s3.on(ListObjectsV2Command)
      .resolvesOnce(page(['t/d=1/a', 't/d=1/b', 't/d=2/a', 't/d=3/a', 't/d=4/a'], 'more'))
      .resolves(page(['t/d=5/a']));
    const store = await sdkObjectStore({ bucket: 'b' });
    expect(await store.listRange('t/', { from: 't/d=1/b', to: 't/d=3/a' }, 10)).toEqual(['t/d=1/b', 't/d=2/a', 't/d=3/a']);
    const sent = s3.commandCalls(ListObjectsV2Command).map((call) => call.args[0].input);
    expect(sent).toEqual([{ Bucket: 'b', Prefix: 't/', StartAfter: 't/d=1/' }]);
  });

  it('follows the continuation token while the pages have not passed the last key', async () => {
    s3.on(ListObjectsV2Command)
      .resolvesOnce(page(['t/1'], 'second'))
      .resolvesOnce(page(['t/2'], 'third'))
      .resolvesOnce(page(['t/3', 't/4']));
    const store = await sdkObjectStore({ bucket: 'b' });
    expect(await store.listRange('t/', { from: 't/1', to: 't/3' }, 5000)).toEqual(['t/1', 't/2', 't/3']);
    const sent = s3.commandCalls(ListObjectsV2Command).map((call) => call.args[0].input);
    expect(sent).toEqual([
      { Bucket: 'b', Prefix: 't/', StartAfter: 't/' },
      { Bucket: 'b', Prefix: 't/', ContinuationToken: 'second' },
      { Bucket: 'b', Prefix: 't/', ContinuationToken: 'third' },
    ]);
  });

  it("orders keys as S3 does (UTF-8 bytes), and never splits a character's surrogate pair in a prefix", () => {
    // U+FF00 sorts after an emoji in JavaScript's UTF-16 order, before it in UTF-8's.
    expect(keyOrder('k/\uFF00', 'k/\u{1F600}')).toBeLessThan(0);
    expect(['k/\u{1F600}', 'k/\uFF00', 'k/a'].sort(keyOrder)).toEqual(['k/a', 'k/\uFF00', 'k/\u{1F600}']);
    expect(commonPrefix('k/\u{1F600}a', 'k/\u{1F601}b')).toBe('k/');
    expect(commonPrefix('dt=2025-06-01/p', 'dt=2025-06-05/p')).toBe('dt=2025-06-0');
    expect(commonPrefix('same', 'same')).toBe('same');
  });
});
