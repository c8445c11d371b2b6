import { constants, createGzip, type Gzip, type ZlibReset } from 'node:zlib';

/**
 * gzip members compressed by a few long-lived zlib streams, each reset between pages, instead of a
 * new stream per page (`zlib.gzip`): deflate's state (about 256 KB at level 1) allocated, zeroed
 * and freed for every page cost more than compressing a 30 KB page, and the one-shot call's
 * stream set-up cost this thread twice what the reused stream's write and flush do. The output is
 * the same: each page is one whole gzip member (written, flushed with Z_FINISH, then reset).
 * Compression itself still runs on libuv's threads.
 */

/** As many streams as libuv has threads by default: more would only queue there. */
const STREAMS_PER_STRATEGY = 4;

class ReusedGzip {
  /** Node's Gzip has reset() (every zlib stream of the deflate family does); its types list it only for Deflate. */
  private readonly stream: Gzip & ZlibReset;
  private output: Buffer[] = [];
  private failed: ((error: Error) => void) | undefined;
  broken = false;

  constructor(options: { level: number; strategy: number }) {
    this.stream = createGzip({ ...options, chunkSize: 64 * 1024 }) as Gzip & ZlibReset;
    this.stream.on('data', (chunk: Buffer) => this.output.push(chunk));
    this.stream.on('error', (error) => {
      this.broken = true;
      this.failed?.(error);
    });
  }

  compress(input: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.failed = reject;
      this.output = [];
      this.stream.write(input);
      this.stream.flush(constants.Z_FINISH, (error?: Error | null) => {
        if (this.broken) return;
        if (error) {
          this.broken = true;
          return reject(error);
        }
        // Output pushed while the stream's readable side was buffering is emitted here, not later.
        while (this.stream.read() !== null);
        const member = this.output.length === 1 ? this.output[0]! : Buffer.concat(this.output);
        this.output = [];
        this.failed = undefined;
        this.stream.reset();
        resolve(member);
      });
    });
  }
}

class GzipPool {
  private readonly idle: ReusedGzip[] = [];
  private readonly waiting: Array<(stream: ReusedGzip) => void> = [];
  private created = 0;

  constructor(private readonly options: { level: number; strategy: number }) {}

  async compress(input: Uint8Array): Promise<Uint8Array> {
    const stream = await this.acquire();
    try {
      return await stream.compress(input);
    } finally {
      this.release(stream);
    }
  }

  private acquire(): Promise<ReusedGzip> {
    const stream = this.idle.pop();
    if (stream) return Promise.resolve(stream);
    if (this.created < STREAMS_PER_STRATEGY) {
      this.created++;
      return Promise.resolve(new ReusedGzip(this.options));
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(stream: ReusedGzip): void {
    let next: ReusedGzip | undefined = stream;
    if (stream.broken) {
      this.created--;
      next = undefined;
    }
    const waiter = this.waiting.shift();
    if (!waiter) {
      if (next) this.idle.push(next);
      return;
    }
    if (!next) {
      this.created++;
      next = new ReusedGzip(this.options);
    }
    waiter(next);
  }
}

const pools = new Map<number, GzipPool>();

/** `input` as one gzip member at level 1 with zlib's `strategy` (Z_DEFAULT_STRATEGY or Z_HUFFMAN_ONLY). */
export function gzipMember(input: Uint8Array, strategy: number = constants.Z_DEFAULT_STRATEGY): Promise<Uint8Array> {
  let pool = pools.get(strategy);
  if (!pool) {
    pool = new GzipPool({ level: 1, strategy });
    pools.set(strategy, pool);
  }
  return pool.compress(input);
}
