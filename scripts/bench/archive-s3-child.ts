/**
 * One S3 archive run in its own process, so its peak memory (max RSS) is the run's alone: the
 * bench starts it with the policy in argv and reads one JSON line back.
 */
import { type ObjectStore, sdkObjectStore, setObjectStoreFactory } from '../../functions/archive/s3/store';
import { runLocally } from '../run-local';
import { silentLogger } from './util';

const [url, policy, latency] = process.argv.slice(2);
// S3 on loopback answers in about a millisecond; S3 itself in tens. With a latency given, every
// request waits that long first, as each would for the network and S3.
const latencyMs = Number(latency ?? 0);
if (latencyMs > 0) {
  const wait = () => new Promise((resolve) => setTimeout(resolve, latencyMs));
  setObjectStoreFactory(async (options) => {
    const store: ObjectStore = await sdkObjectStore(options);
    const delayed = Object.entries(store).map(([name, value]) =>
      typeof value === 'function' ? [name, async (...args: unknown[]) => (await wait(), value(...args))] : [name, value],
    );
    return Object.fromEntries(delayed) as ObjectStore;
  });
}
const cpuMicros = () => {
  const { userCPUTime, systemCPUTime } = process.resourceUsage();
  return userCPUTime + systemCPUTime;
};
const summary = await runLocally('archive', JSON.parse(policy!), url!, { logger: silentLogger() });
process.stdout.write(`${JSON.stringify({ summary: summary.targets[0], maxRssKb: process.resourceUsage().maxRSS, cpuMicros: cpuMicros() })}\n`);
