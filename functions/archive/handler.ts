import type { Context } from 'aws-lambda';
import { runLambdaJob } from '../../shared/lambda';
import { createJobLogger } from '../../shared/logger';
import { createJobMetrics } from '../../shared/metrics';
import { archiveJob } from './job';
import { archiveEventSchema } from './policy';

const logger = createJobLogger('archive');
const metrics = createJobMetrics('archive');

/** EventBridge rule target: the event is the archive policy (see README, "Archive policy"). */
export const handler = (event: unknown, context: Context) => runLambdaJob(archiveJob, archiveEventSchema, event, context, logger, metrics);
