import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { batched, freshTables, seed } from './archive';
import { connect, fmt } from './util';

const run = promisify(execFile);

/**
 * `npm run bench -- archive-s3`: the same 1,000,000 expired rows as `archive`, moved (a) into an
 * archive table by the batched mover and (s) to an S3-compatible server on loopback (s3rver, a
 * temporary directory) as Parquet, default rowsPerObject and rowGroupRows, gzip. Reports rows/s
 * of each and their ratio, bytes on S3 per row against the source table's bytes per row, and the
 * S3 run's peak memory (max RSS of the process that ran it, which does nothing else).
 * Two alternating rounds of (a) and (s), best of each, every round's ratio shown too.
 * `BENCH_CPU_PROF=DIR` writes a CPU profile of each S3 run there.
 */
/** `--s3-latency-ms=N`: each S3 request of the S3 run waits N ms first (S3 on loopback has almost none). */
function s3LatencyMs(): number {
  const arg = process.argv.slice(2).find((a) => a.startsWith('--s3-latency-ms='));
  const value = arg ? Number(arg.slice('--s3-latency-ms='.length)) : 0;
  if (!Number.isInteger(value) || value < 0) throw new Error(`archive-s3: --s3-latency-ms must be a whole number of milliseconds (got ${arg})`);
  return value;
}

/**
 * CPU seconds used so far by the bench's Postgres server: its postmaster and every process it
 * started (backends, walwriter...), from /proc; other servers on the machine do not count.
 */
function postgresCpuSeconds(postmaster: number): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((name) => /^[0-9]+$/.test(name))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(pid) !== postmaster && Number(fields[1]) !== postmaster) continue;
      // Own time, and that of exited children (a backend that ended, counted in the postmaster).
      ticks += Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
    } catch {
      // gone since the listing
    }
  }
  return ticks / 100;
}

const ROUNDS = 2;

interface S3Run {
  counts: Record<string, number>;
  maxRssKb: number;
  cpuMicros: number;
  serverCpuSeconds: number;
  postgresCpuSeconds: number;
  manifest?: { bytes: number; rows: number; objects: number };
}

/** One S3 run in a process of its own (its CPU and peak memory are the run's alone); `BENCH_CPU_PROF` profiles it. */
async function s3Run(url: string, bucket: string, env: NodeJS.ProcessEnv, latencyMs: number, round: number, postmaster: number): Promise<S3Run> {
  const policy = {
    targets: [
      {
        source: 'bench.orders',
        ageColumn: 'completed_at',
        ageFallbackColumn: 'created_at',
        retention: '90 days',
        destination: { s3: { bucket, prefix: 'bench' } },
      },
    ],
    statementTimeoutMs: 600_000,
  };
  const postgresBefore = postgresCpuSeconds(postmaster);
  const serverBefore = process.cpuUsage();
  const profile = process.env.BENCH_CPU_PROF;
  const { stdout } = await run(
    process.execPath,
    [
      ...(profile ? ['--cpu-prof', '--cpu-prof-dir', profile, '--cpu-prof-name', `archive-s3-round${round}.cpuprofile`] : []),
      '--import',
      'tsx',
      'scripts/bench/archive-s3-child.ts',
      url,
      JSON.stringify(policy),
      String(latencyMs),
    ],
    { env, maxBuffer: 1 << 20 },
  );
  const serverCpu = process.cpuUsage(serverBefore);
  const postgresSeconds = postgresCpuSeconds(postmaster) - postgresBefore;
  const child = JSON.parse(stdout.trim().split('\n').pop()!) as {
    summary: { state: string; detail?: string; counts: Record<string, number> };
    maxRssKb: number;
    cpuMicros: number;
  };
  if (child.summary.state !== 'succeeded') throw new Error(`the S3 run ${child.summary.state}: ${child.summary.detail}`);
  return {
    counts: child.summary.counts,
    maxRssKb: child.maxRssKb,
    cpuMicros: child.cpuMicros,
    serverCpuSeconds: (serverCpu.user + serverCpu.system) / 1e6,
    postgresCpuSeconds: postgresSeconds,
  };
}

export async function benchArchiveS3(url: string): Promise<string[]> {
  const latencyMs = s3LatencyMs();
  const sql = await connect(url);
  // S3 keeps its objects on machines of its own; s3rver keeps them in memory where it can
  // (/dev/shm), so its file writes (a file and a metadata file per object) do not count as ours.
  const directory = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'hk-bench-s3-'));
  const server = new S3rver({ port: 0, address: '127.0.0.1', silent: true, directory });
  const { port } = (await server.run()) as { port: number };
  const endpoint = `http://127.0.0.1:${port}`;
  const env = {
    ...process.env,
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
  };
  const client = new S3Client({
    endpoint,
    forcePathStyle: true,
    region: 'us-east-1',
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  try {
    // The server's postmaster: the parent of this session's backend.
    const { rows: backend } = await sql.query('SELECT pg_backend_pid() AS pid');
    const backendStat = readFileSync(`/proc/${backend[0].pid}/stat`, 'utf8');
    const postmaster = Number(backendStat.slice(backendStat.lastIndexOf(')') + 2).split(' ')[1]);
    await seed(sql);
    // Alternating rounds, the best of each: either run alone swings ±30% on a shared machine.
    let table = { rows: 0, ms: Number.POSITIVE_INFINITY };
    let best: S3Run | undefined;
    const ratios: number[] = [];
    let maxRssKb = 0;
    let size: { heap: number; total: number; n: number } | undefined;
    for (let round = 1; round <= ROUNDS; round++) {
      await freshTables(sql);
      const a = await batched(url);
      if (a.ms < table.ms) table = a;
      await freshTables(sql);
      if (size === undefined) {
        const { rows } = await sql.query(
          `SELECT pg_table_size('bench.orders')::float8 AS heap, pg_total_relation_size('bench.orders')::float8 AS total, count(*)::float8 AS n FROM bench.orders`,
        );
        size = rows[0];
      }
      // Each round into a bucket of its own, its manifest alone.
      const bucket = `hk-bench-${round}`;
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      await sql.query(
        `DO $$ BEGIN IF to_regclass('housekeeping.archive_objects') IS NOT NULL THEN DELETE FROM housekeeping.archive_objects; END IF; END $$`,
      );
      const s = await s3Run(url, bucket, env, latencyMs, round, postmaster);
      if (s.counts.rowsMoved !== a.rows) throw new Error(`the S3 run moved ${s.counts.rowsMoved} rows, the table's ${a.rows}`);
      ratios.push(a.ms / s.counts.durationMs!);
      maxRssKb = Math.max(maxRssKb, s.maxRssKb);
      if (best === undefined || s.counts.durationMs! < best.counts.durationMs!) {
        const { rows: manifest } = await sql.query(
          `SELECT sum(size_bytes)::float8 AS bytes, sum(row_count)::float8 AS rows, count(*)::int AS objects FROM housekeeping.archive_objects`,
        );
        best = { ...s, manifest: manifest[0] };
      }
    }
    const s3 = best!.counts;
    const manifest = best!.manifest!;
    const tableRate = table.rows / (table.ms / 1000);
    const s3Rate = s3.rowsMoved! / (s3.durationMs! / 1000);
    const rowsAll = size!.n;
    return [
      `archive-s3: ${table.rows.toLocaleString()} expired rows of ~230 bytes, best of ${ROUNDS} alternating rounds; (a) batched mover into a table, (s) S3 as Parquet (s3rver on loopback${latencyMs ? `, ${latencyMs} ms added to each S3 request` : ''}, rowsPerObject 100,000, rowGroupRows 10,000, gzip)`,
      `  (a) table   ${fmt(tableRate / 1000, 0)}k rows/s (${fmt(table.ms / 1000, 1)} s)`,
      `  (s) S3      ${fmt(s3Rate / 1000, 0)}k rows/s (${fmt(s3.durationMs! / 1000, 1)} s, ${manifest.objects} objects, longest batch ${fmt(s3.longestBatchMs! / 1000, 1)} s)   (s)/(a) ${fmt(s3Rate / tableRate, 2)}, best of each (goal >= 0.5); round by round ${ratios.map((r) => fmt(r, 2)).join(', ')}`,
      `  bytes per row: S3 ${fmt(manifest.bytes / manifest.rows, 1)}, source heap ${fmt(size!.heap / rowsAll, 1)}, heap + indexes ${fmt(size!.total / rowsAll, 1)}`,
      `  where the S3 run's time went: ${['pickWaitMs', 'encodeMs', 'uploadMs', 'verifyMs', 'commitMs', 'publishMs'].map((stage) => `${stage.replace(/Ms$/, '')} ${fmt((s3[stage] ?? 0) / 1000, 1)} s`).join(', ')}`,
      `  CPU of the S3 run: node ${fmt(best!.cpuMicros / 1e6, 1)} s, the S3 server (this process) ${fmt(best!.serverCpuSeconds, 1)} s, Postgres ${fmt(best!.postgresCpuSeconds, 1)} s`,
      `  peak memory of the S3 run: ${fmt(maxRssKb / 1024, 0)} MB max RSS (node, pg, the Parquet writer, one batch)`,
    ];
  } finally {
    client.destroy();
    await server.close();
    rmSync(directory, { recursive: true, force: true });
    await sql.end();
  }
}
