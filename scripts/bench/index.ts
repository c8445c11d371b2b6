/**
 * `npm run bench`: every benchmark against one embedded Postgres, each reported as ratios against
 * a baseline measured in the same run (this machine is shared and noisy: absolute times vary).
 * `npm run bench -- partition` runs one. `npm run bench -- vs-partman` runs only when named: it
 * uses a PostgreSQL 15 with pg_partman instead (see vs-partman.ts), not the embedded server.
 * Arguments starting with `--` are options for the benches (e.g. `vs-partman --tables=1000`).
 */
import { startEmbeddedPostgres } from '../embedded-postgres';
import { benchArchive } from './archive';
import { benchArchiveS3 } from './archive-s3';
import { benchBundles } from './bundles';
import { benchPartition } from './partition';
import { benchRollup } from './rollup';
import { benchVsPartman } from './vs-partman';

const BENCHES: Record<string, (url: string) => Promise<string[]>> = {
  partition: benchPartition,
  archive: benchArchive,
  'archive-s3': benchArchiveS3,
  rollup: benchRollup,
  bundles: async () => benchBundles(),
};

/** Benches that bring their own server, run only when asked for by name. */
const OWN_SERVER: Record<string, () => Promise<string[]>> = {
  'vs-partman': benchVsPartman,
};

const wanted = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
const unknown = wanted.filter((name) => !(name in BENCHES) && !(name in OWN_SERVER));
if (unknown.length > 0) {
  console.error(`unknown bench ${unknown.join(', ')}; choose from ${[...Object.keys(BENCHES), ...Object.keys(OWN_SERVER)].join(', ')}`);
  process.exit(2);
}
const embedded = Object.entries(BENCHES).filter(([name]) => wanted.length === 0 || wanted.includes(name));
if (embedded.length > 0) {
  const server = await startEmbeddedPostgres();
  try {
    for (const [, bench] of embedded) {
      for (const line of await bench(server.url)) console.log(line);
    }
  } finally {
    await server.stop();
  }
}
for (const [name, bench] of Object.entries(OWN_SERVER)) {
  if (!wanted.includes(name)) continue;
  for (const line of await bench()) console.log(line);
}
