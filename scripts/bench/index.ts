/**
 * `npm run bench`: every benchmark against one embedded Postgres, each reported as ratios against
 * a baseline measured in the same run (this machine is shared and noisy: absolute times vary).
 * `npm run bench -- partition` runs one.
 */
import { startEmbeddedPostgres } from '../embedded-postgres';
import { benchArchive } from './archive';
import { benchBundles } from './bundles';
import { benchPartition } from './partition';
import { benchRollup } from './rollup';

const BENCHES: Record<string, (url: string) => Promise<string[]>> = {
  partition: benchPartition,
  archive: benchArchive,
  rollup: benchRollup,
  bundles: async () => benchBundles(),
};

const wanted = process.argv.slice(2);
const server = await startEmbeddedPostgres();
try {
  for (const [name, bench] of Object.entries(BENCHES)) {
    if (wanted.length > 0 && !wanted.includes(name)) continue;
    for (const line of await bench(server.url)) console.log(line);
  }
} finally {
  await server.stop();
}
