/**
 * The object store the S3 destination writes to: six operations, so the archive logic never
 * touches the AWS SDK itself. The SDK is loaded on first use (a table-only deployment never
 * evaluates it). `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`) points it at an S3-compatible
 * server, addressed path-style (the tests start one on 127.0.0.1).
 */
export interface ObjectStore {
  readonly bucket: string;
  put(key: string, body: Uint8Array, metadata: Record<string, string>): Promise<void>;
  /** The whole object, or undefined if there is none. */
  get(key: string): Promise<Uint8Array | undefined>;
  head(key: string): Promise<{ size: number; metadata: Record<string, string> } | undefined>;
  /**
   * Server-side copy within the bucket (metadata copied) that never overwrites: 'exists' when an
   * object is already at `to` (S3 checks that atomically, If-None-Match; a store that ignores the
   * header copies over it, which is why callers list first).
   */
  copy(from: string, to: string): Promise<'copied' | 'exists'>;
  /** Every key under `prefix`. */
  list(prefix: string): Promise<string[]>;
  /**
   * The keys under `prefix` from `range.from` to `range.to` (both included, S3's byte order),
   * listed from the first on and no further than the last: one request for a batch's objects
   * however many day folders they span. Undefined once more than `atMost` keys are in the range
   * (listing it would cost more than asking for each key).
   */
  listRange(prefix: string, range: KeyRange, atMost: number): Promise<string[] | undefined>;
  /** Deletes every key given (a missing one is no error), in as few requests as S3 allows. */
  deleteMany(keys: string[]): Promise<void>;
}

interface KeyRange {
  from: string;
  to: string;
}

/** S3 lists keys in the byte order of their UTF-8, which JavaScript's string order is not beyond ASCII. */
export function keyOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** The longest prefix two keys share, never ending inside a surrogate pair (it is sent as UTF-8). */
export function commonPrefix(a: string, b: string): string {
  let at = 0;
  while (at < a.length && at < b.length && a[at] === b[at]) at++;
  if (at > 0 && /[\uD800-\uDBFF]/.test(a[at - 1]!)) at--;
  return a.slice(0, at);
}

/** Tries of a copy S3 answered 409 ConditionalRequestConflict (a concurrent write to the key). */
const COPY_ATTEMPTS = 3;

/** DeleteObjects takes at most this many keys per request. */
const DELETE_BATCH = 1000;

export interface StoreOptions {
  bucket: string;
  /** SSE-KMS: every object written or copied is encrypted with this key. */
  kmsKeyId?: string;
}

const notFound = (error: unknown) => {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.$metadata?.httpStatusCode === 404;
};

/**
 * A key as the x-amz-copy-source header wants it, URI-encoded. Our keys use only letters, digits
 * and !-_.*'()=/ (the policy's prefix rule, and names we generate), which encodeURI keeps as they
 * are: S3 and S3-compatible servers that decode only with decodeURI read them alike.
 */
export function copySource(bucket: string, key: string): string {
  return encodeURI(`${bucket}/${key}`);
}

let created: ((options: StoreOptions) => Promise<ObjectStore>) | undefined;

/** Tests may wrap the store (fault injection); production uses the SDK one. */
export function setObjectStoreFactory(factory: ((options: StoreOptions) => Promise<ObjectStore>) | undefined): void {
  created = factory;
}

export async function openObjectStore(options: StoreOptions): Promise<ObjectStore> {
  return created ? created(options) : sdkObjectStore(options);
}

export async function sdkObjectStore({ bucket, kmsKeyId }: StoreOptions): Promise<ObjectStore> {
  const sdk = await import('@aws-sdk/client-s3');
  const endpoint = process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  const client = new sdk.S3Client({
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    ...(process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION ? {} : { region: 'us-east-1' }),
    // The SDK's own CRC of every upload and download (its default since 3.729) only where S3
    // requires one (DeleteObjects): each object is read back and its decoded contents checked
    // against what was written before any row is deleted, which no transfer checksum replaces.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  const encryption = kmsKeyId ? { ServerSideEncryption: 'aws:kms' as const, SSEKMSKeyId: kmsKeyId } : {};
  return {
    bucket,
    async put(key, body, metadata) {
      await client.send(
        new sdk.PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          Metadata: metadata,
          ContentType: 'application/vnd.apache.parquet',
          ...encryption,
        }),
      );
    },
    async get(key) {
      try {
        const out = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: key }));
        return await out.Body!.transformToByteArray();
      } catch (error) {
        if (notFound(error)) return undefined;
        throw error;
      }
    },
    async head(key) {
      try {
        const out = await client.send(new sdk.HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { size: Number(out.ContentLength ?? 0), metadata: out.Metadata ?? {} };
      } catch (error) {
        if (notFound(error)) return undefined;
        throw error;
      }
    },
    async copy(from, to) {
      for (let attempt = 1; ; attempt++) {
        try {
          await client.send(
            new sdk.CopyObjectCommand({
              Bucket: bucket,
              Key: to,
              CopySource: copySource(bucket, from),
              MetadataDirective: 'COPY',
              IfNoneMatch: '*',
              ...encryption,
            }),
          );
          return 'copied';
        } catch (error) {
          const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
          if (status === 412) return 'exists';
          // 409: another write to the key was in flight; S3 asks for a retry, which then sees it (412) or copies.
          if (status === 409 && attempt < COPY_ATTEMPTS) continue;
          throw error;
        }
      }
    },
    async list(prefix) {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const out = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        for (const object of out.Contents ?? []) if (object.Key) keys.push(object.Key);
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
      } while (token);
      return keys;
    },
    async listRange(prefix, range, atMost) {
      const keys: string[] = [];
      // StartAfter excludes the key it names: start after the first key less its last character,
      // which sorts just before it (keys in between are filtered out below).
      const StartAfter = range.from.slice(0, -1);
      let token: string | undefined;
      do {
        const out = await client.send(
          new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : { StartAfter }) }),
        );
        token = out.IsTruncated ? out.NextContinuationToken : undefined;
        for (const { Key } of out.Contents ?? []) {
          if (!Key) continue;
          if (keyOrder(Key, range.to) > 0) return keys;
          if (keyOrder(Key, range.from) < 0) continue;
          if (keys.length === atMost) return undefined;
          keys.push(Key);
        }
      } while (token);
      return keys;
    },
    async deleteMany(keys) {
      for (let start = 0; start < keys.length; start += DELETE_BATCH) {
        const chunk = keys.slice(start, start + DELETE_BATCH);
        const out = await client.send(
          new sdk.DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: chunk.map((Key) => ({ Key })), Quiet: true } }),
        );
        // DeleteObjects answers 200 even when some keys were not deleted; those come back as errors.
        const failed = out.Errors ?? [];
        if (failed.length > 0) {
          throw new Error(
            `S3 did not delete ${failed.length} of ${chunk.length} object(s), e.g. ${failed[0]!.Key}: ${failed[0]!.Code} ${failed[0]!.Message ?? ''}`.trim(),
          );
        }
      }
    },
  };
}
