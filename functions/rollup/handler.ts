import type { Context } from 'aws-lambda';
import { runLambdaJob } from '../../shared/lambda';
import { createJobLogger } from '../../shared/logger';
import { createJobMetrics } from '../../shared/metrics';
import { rollupJob } from './job';
import { rollupEventSchema } from './policy';

const logger = createJobLogger('rollup');
const metrics = createJobMetrics('rollup');

/** EventBridge rule target: the event is the rollup policy (see README, "Rollup policy"). */
export const handler = (event: unknown, context: Context) => runLambdaJob(rollupJob, rollupEventSchema, event, context, logger, metrics);
