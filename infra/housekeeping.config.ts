/**
 * THE FILE YOU EDIT: which tables get which policy, on which schedule. Each policy is exactly
 * the event its Lambda receives (README: "Partition policy"), validated when you run `cdk synth`.
 * EventBridge schedules are in UTC.
 */
import { Duration } from 'aws-cdk-lib';
import { Schedule } from 'aws-cdk-lib/aws-events';
import type { PgHousekeepingProps } from './pg-housekeeping';

export const housekeeping: Omit<PgHousekeepingProps, 'databaseSecret' | 'vpc' | 'vpcSubnets' | 'securityGroups'> = {
  partition: {
    // Hourly at :05, so a missed run is retried long before tomorrow's partition is needed.
    schedule: Schedule.cron({ minute: '5' }),
    timeout: Duration.minutes(5),
    policy: {
      targets: [
        { table: 'public.events', interval: 'day', premake: 7, retention: { keep: 30, mode: 'drop' } },
        { table: 'public.invoices', interval: 'month', premake: 3, retention: { duration: '24 months', mode: 'detach' } },
      ],
      lockTimeoutMs: 3000,
    },
  },
};
