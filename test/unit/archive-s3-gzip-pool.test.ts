import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gzipMember } from '../../functions/archive/s3/gzip-pool';
import { gzipPage } from '../../functions/archive/s3/parquet';

/** Written by an adversarial review: the reused gzip streams under odd sizes, heavy concurrency, and process exit. */

function page(size: number, seed: number): Uint8Array {
  if (size === 0) return new Uint8Array(0);
  // Half random (Huffman-only path), half repetitive (default strategy), chosen by seed.
  if (seed % 2 === 0) return randomBytes(size);
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 7 + seed) % 13;
  return out;
}

describe('gzip pool', () => {
  it('round-trips empty, tiny, 64 KB-boundary and multi-MB pages sent all at once, each its own member', async () => {
    const sizes = [0, 1, 0, 65535, 65536, 65537, 131072, 3 * 1024 * 1024 + 7, 0, 32767, 32768, 8 * 1024 * 1024];
    const inputs = Array.from({ length: 120 }, (_, i) => page(sizes[i % sizes.length]!, i));
    const outputs = await Promise.all(inputs.map((input) => gzipPage(input)));
    outputs.forEach((out, i) => {
      expect(Buffer.compare(gunzipSync(out), Buffer.from(inputs[i]!)), `page ${i} (${inputs[i]!.byteLength} bytes)`).toBe(0);
    });
  });

  it('a member does not change after later pages compress (no shared output buffer overwritten)', async () => {
    const first = await gzipMember(page(1000, 1));
    const copy = Buffer.from(first);
    await Promise.all(Array.from({ length: 50 }, (_, i) => gzipMember(page(5000 + i, 3))));
    expect(Buffer.compare(Buffer.from(first), copy)).toBe(0);
  });

  it('a process that compressed pages exits by itself', () => {
    const script = `import { gzipPage } from '${process.cwd()}/functions/archive/s3/parquet.ts';
      await Promise.all(Array.from({ length: 20 }, (_, i) => gzipPage(new Uint8Array(70000 * (i % 3)).fill(i))));
      console.log('done');`;
    const run = spawnSync('node_modules/.bin/tsx', ['--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
    expect(run.error?.message, run.stderr).toBeUndefined();
    expect(run.stdout.trim()).toBe('done');
    expect(run.status).toBe(0);
  });
});
