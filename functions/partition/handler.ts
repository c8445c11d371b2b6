import type { Context } from 'aws-lambda';
import { runLambdaJob } from '../../shared/lambda';
import { createJobLogger } from '../../shared/logger';
import { createJobMetrics } from '../../shared/metrics';
import { partitionJob } from './job';
import { partitionEventSchema } from './policy';

const logger = createJobLogger('partition');
const metrics = createJobMetrics('partition');

/** EventBridge rule target: the event is the partition policy (see README, "Partition policy"). */
export const handler = (event: unknown, context: Context) => runLambdaJob(partitionJob, partitionEventSchema, event, context, logger, metrics);
