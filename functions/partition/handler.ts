import { lambdaHandler } from '../../shared/lambda';
import { JOBS } from '../registry';

/** The Lambda's entry: the event is a partition policy (README, "Partition policy"), or {} to run the deployed one. */
export const handler = lambdaHandler(JOBS, 'partition');
