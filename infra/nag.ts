import { type CfnElement, type Stack, Validations } from 'aws-cdk-lib';
import { PgHousekeeping } from './pg-housekeeping';

/**
 * cdk-nag (AwsSolutions) findings we accept, each with its reason; any other finding fails the
 * synth. cdk-nag 3 takes acknowledgements through CDK's own Validations API.
 */
const EVERY_STACK = [
  {
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    reason: 'The AWS-managed minimum for writing the function logs; it grants nothing on data',
  },
  {
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
    reason: 'The AWS-managed minimum for a function to attach its network interfaces in the VPC',
  },
  {
    id: 'AwsSolutions-L1',
    reason:
      "The jobs run Node.js 24, the newest runtime aws-cdk-lib offers (esbuild target node24); CDK's own custom-resource providers pick their runtime themselves",
  },
  {
    id: 'AwsSolutions-SQS3',
    reason:
      "Each failures queue is the end of the line: the Lambda on-failure destination and the schedule target's dead-letter queue. A queue behind it would hide failures; the <job>Failures alarm fires on every message that arrives",
  },
];

const SANDBOX_ONLY = [
  {
    id: 'AwsSolutions-S1',
    reason:
      'Sandbox archive bucket (-c demo=true): it holds demo rows and goes with `cdk destroy`; access logs would need a second bucket that outlives it',
  },
  { id: 'AwsSolutions-RDS3', reason: 'Sandbox database (-c demo=true): single-AZ on purpose; it is for trying the jobs, not for production' },
  { id: 'AwsSolutions-RDS10', reason: 'Sandbox database (-c demo=true): no deletion protection, so `cdk destroy` removes it' },
  { id: 'AwsSolutions-RDS11', reason: 'Sandbox database (-c demo=true): default port, reachable only from the jobs inside an isolated VPC' },
  {
    id: 'AwsSolutions-SMG4',
    reason:
      'Sandbox secret (-c demo=true) lives as long as the sandbox; the jobs already survive rotation (they re-fetch after 28P01) when it is enabled',
  },
  {
    id: 'AwsSolutions-EC23',
    reason: 'The Secrets Manager endpoint admits the VPC CIDR (a token, which the rule cannot evaluate), not 0.0.0.0/0; the VPC is isolated',
  },
];

/**
 * aws-cdk-lib's LambdaInvoke schedule target grants its role invoke on the function and on
 * `<function ARN>:*` (versions and aliases), which AwsSolutions-IAM5 reports. Acknowledged per
 * job function, by its exact resource, so any other wildcard still fails the synth.
 */
function schedulerInvokeFindings(stack: Stack) {
  const findings = [];
  for (const construct of stack.node.findAll()) {
    if (!(construct instanceof PgHousekeeping)) continue;
    for (const job of Object.keys(construct.schedules) as Array<keyof typeof construct.schedules>) {
      const logicalId = stack.getLogicalId(construct.jobs[job]!.function.node.defaultChild as CfnElement);
      findings.push({
        id: `AwsSolutions-IAM5[Resource::<${logicalId}.Arn>:*]`,
        reason:
          `The ${job} schedule's role (assumable only by EventBridge Scheduler for this account's default schedule group) may invoke the ${job} function; ` +
          "aws-cdk-lib's LambdaInvoke target adds its versions and aliases (:*), and the schedule invokes the unqualified function",
      });
    }
  }
  return findings;
}

/**
 * An S3 archive target's grants name its own folders with a trailing wildcard (object keys are
 * made per batch: dt=<day>/part-<first>-<last>.parquet). Acknowledged per exact prefix, so a
 * wildcard on any other resource still fails the synth.
 */
function archiveS3Findings(stack: Stack) {
  const findings = [];
  for (const construct of stack.node.findAll()) {
    if (!(construct instanceof PgHousekeeping)) continue;
    for (const { bucket, objects, pending } of construct.archiveS3) {
      // The partition is a literal in a stack with an environment, a token in one without.
      for (const prefix of [objects, pending]) {
        for (const partition of [stack.partition, '<AWS::Partition>']) {
          findings.push({
            id: `AwsSolutions-IAM5[Resource::arn:${partition}:s3:::${bucket}/${prefix}*]`,
            reason: `The archive function writes one object per batch and day under ${prefix} of ${bucket}: keys are made at run time, so the grant names the folder, not the objects`,
          });
        }
      }
    }
  }
  return findings;
}

export function acknowledgeReviewedFindings(stack: Stack, options: { sandbox: boolean }): void {
  for (const finding of [...EVERY_STACK, ...(options.sandbox ? SANDBOX_ONLY : []), ...schedulerInvokeFindings(stack), ...archiveS3Findings(stack)])
    Validations.of(stack).acknowledge(finding);
}
