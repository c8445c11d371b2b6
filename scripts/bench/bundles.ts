import { execFileSync } from 'node:child_process';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { JOB_NAMES } from '../../functions/registry';
import { BUNDLING } from '../../infra/job-function';
import { ENV } from '../../shared/environment';
import { fmt, percentile } from './util';

const INIT_SAMPLES = 7;

/** Module-load time of a bundle in a fresh process: what a cold start's init phase pays for our code. */
function coldInitMs(bundle: string): number {
  const script = `const t = performance.now(); require(${JSON.stringify(bundle)}); process.stdout.write(String(performance.now() - t));`;
  const env = {
    PATH: process.env.PATH,
    AWS_REGION: 'eu-west-1',
    [ENV.dbSecretArn]: 'arn:aws:secretsmanager:eu-west-1:1:secret:x',
    POWERTOOLS_LOG_LEVEL: 'SILENT',
  };
  return Number(execFileSync(process.execPath, ['-e', script], { env }));
}

/** Node's own start, same measure, as the baseline every init pays anyway. */
function emptyInitMs(): number {
  return Number(
    execFileSync(process.execPath, ['-e', `const t = performance.now(); require('node:http'); process.stdout.write(String(performance.now() - t));`]),
  );
}

export async function benchBundles(): Promise<string[]> {
  const lines = [
    `bundles: built exactly as CDK builds them (esbuild, minified, ${BUNDLING.target}, cjs); init = require() in a fresh node process, median of 7`,
  ];
  const outdir = mkdtempSync(join(tmpdir(), 'hk-bundles-'));
  for (const job of JOB_NAMES) {
    const outfile = join(outdir, job, 'index.js');
    const result = await build({
      entryPoints: [`functions/${job}/handler.ts`],
      bundle: true,
      platform: 'node',
      target: BUNDLING.target,
      format: 'cjs',
      minify: BUNDLING.minify,
      sourcemap: BUNDLING.sourceMap,
      external: BUNDLING.externalModules,
      supported: { 'dynamic-import': false },
      outfile,
      metafile: true,
      logLevel: 'silent',
    });
    const output = Object.values(result.metafile.outputs).find((o) => o.entryPoint)!;
    const byPackage = new Map<string, number>();
    for (const [file, info] of Object.entries(output.inputs)) {
      const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(file);
      const name = match ? match[1]!.replace(/^@(smithy|aws-sdk)\/.*/, '@$1/*') : 'pg-housekeeper';
      byPackage.set(name, (byPackage.get(name) ?? 0) + info.bytesInOutput);
    }
    const top = [...byPackage.entries()].sort((a, b) => b[1] - a[1]).slice(0, 4);
    const size = statSync(outfile).size;
    const inits = Array.from({ length: INIT_SAMPLES }, () => coldInitMs(outfile));
    lines.push(
      `  ${job.padEnd(9)} ${fmt(size / 1024, 0).padStart(5)} KB (target ≤ 1024)   init ${fmt(percentile(inits, 50), 0).padStart(4)} ms (target ≤ 300)` +
        `   largest: ${top.map(([name, bytes]) => `${name} ${fmt(bytes / 1024, 0)} KB`).join(', ')}`,
    );
  }
  const baseline = percentile(Array.from({ length: INIT_SAMPLES }, emptyInitMs), 50);
  lines.push(`  (for scale: the same measure around a bare require('node:http') is ${fmt(baseline, 1)} ms)`);
  return lines;
}
