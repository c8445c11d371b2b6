/**
 * One S3 archive run in its own process, so its peak memory (max RSS) is the run's alone: the
 * bench starts it with the policy in argv and reads one JSON line back.
 */
import { runLocally } from '../run-local';
import { silentLogger } from './util';

const [url, policy] = process.argv.slice(2);
const summary = await runLocally('archive', JSON.parse(policy!), url!, { logger: silentLogger() });
process.stdout.write(`${JSON.stringify({ summary: summary.targets[0], maxRssKb: process.resourceUsage().maxRSS })}\n`);
