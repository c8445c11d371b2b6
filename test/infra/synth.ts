import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, type Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import { AwsSolutionsChecks } from 'cdk-nag';
import { JOB_NAMES } from '../../functions/registry';
import { acknowledgeReviewedFindings } from '../../infra/nag';
import { HousekeepingStack, type HousekeepingStackProps } from '../../infra/stack';

/** The context `cdk synth` runs with: cdk.json's feature flags, so tests see the deployed template. */
export const CDK_CONTEXT = (JSON.parse(readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8')) as { context: Record<string, unknown> })
  .context;
export const ENV = { account: '123456789012', region: 'eu-west-1' };

export interface Synthesized {
  stack: Stack;
  assembly: CloudAssembly;
  template: Template;
  json: {
    Resources: Record<
      string,
      { Type: string; Properties: Record<string, unknown>; Metadata?: Record<string, string>; DeletionPolicy?: string; DependsOn?: string[] }
    >;
    Outputs?: Record<string, { Value: unknown }>;
  };
  /** The asset directory of each function, by logical id (needs asset metadata). */
  assetDir(logicalId: string): string;
}

/** Synthesizes one HousekeepingStack as the app does, with cdk-nag unless `nag: false`. */
export function synthStack(id: string, props: Omit<HousekeepingStackProps, 'env'>, options: { nag?: boolean; outdir?: string } = {}): Synthesized {
  const app = new App({ outdir: options.outdir, context: { ...CDK_CONTEXT, 'aws:cdk:enable-asset-metadata': true } });
  const stack = new HousekeepingStack(app, id, { ...props, env: ENV });
  if (options.nag !== false) {
    acknowledgeReviewedFindings(stack, { sandbox: props.target?.kind === 'demo' || Boolean(props.databases?.some((d) => d.sandbox)) });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  }
  const assembly = app.synth();
  const json = assembly.getStackByName(stack.stackName).template as Synthesized['json'];
  return {
    stack,
    assembly,
    template: Template.fromJSON(json),
    json,
    assetDir: (logicalId) => join(assembly.directory, json.Resources[logicalId]!.Metadata!['aws:asset:path']!),
  };
}

/** Logical ids of the job functions, by job. */
export function jobFunctions(json: Synthesized['json']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [logicalId, resource] of Object.entries(json.Resources)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const job = JOB_NAMES.find((name) => logicalId.startsWith(`Housekeeping${name[0]!.toUpperCase()}${name.slice(1)}`));
    if (job) out[job] = logicalId;
  }
  return out;
}
