import { lambdaHandler } from '../../shared/lambda';
import { JOBS } from '../registry';

/** The Lambda's entry: the event is a archive policy (README, "Archive policy"), or {} to run the deployed one. */
export const handler = lambdaHandler(JOBS, 'archive');
