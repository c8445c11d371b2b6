import { Logger } from '@aws-lambda-powertools/logger';
import pg from 'pg';
import { sleep } from '../../shared/postgres';

export const silentLogger = () => new Logger({ serviceName: 'pg-housekeeper-bench', logLevel: 'SILENT' });

export async function connect(url: string, applicationName = 'bench'): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName });
  await client.connect();
  return client;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Runs `statement` in a loop until stopped, recording each call's latency in ms. */
export function latencyProbe(statement: () => Promise<unknown>) {
  const latencies: number[] = [];
  let running = true;
  const done = (async () => {
    while (running) {
      const started = performance.now();
      await statement();
      latencies.push(performance.now() - started);
      await sleep(5);
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return { count: latencies.length, worst: Math.max(...latencies), p99: percentile(latencies, 99) };
    },
  };
}

export const fmt = (n: number, digits = 1) => n.toFixed(digits);
