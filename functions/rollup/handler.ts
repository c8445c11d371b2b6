import { lambdaHandler } from '../../shared/lambda';
import { JOBS } from '../registry';

/** The Lambda's entry: the event is a rollup policy (README, "Rollup policy"), or {} to run the deployed one. */
export const handler = lambdaHandler(JOBS, 'rollup');
