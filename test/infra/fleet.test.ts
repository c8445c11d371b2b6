import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, CfnResource, Duration, Stack } from 'aws-cdk-lib';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { transformSync } from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';
import { readContext } from '../../infra/context';
import { type DatabaseConfig, planFleet } from '../../infra/fleet';
import { demoHousekeeping, housekeeping, databases as shippedDatabases } from '../../infra/housekeeping.config';
import { databaseNames, fitName } from '../../infra/names';
import { PgHousekeeping } from '../../infra/pg-housekeeping';
import { HousekeepingStack, STACK_RESOURCE_LIMIT } from '../../infra/stack';
import { CDK_CONTEXT, ENV, type Synthesized, synthStack } from './synth';

const ORDERS_SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders-db-AbCdEf';
// A database of another team, in another account: its secret is encrypted with that account's key.
const SHARED_SECRET = 'arn:aws:secretsmanager:eu-west-1:210987654321:secret:analytics-db-MnOpQr';
// 63 characters: every name built from it must still fit (Lambda and Scheduler names: 64).
const LONG_ID = 'analytics-warehouse-reporting-eu-west-1-customer-events-rollups';

const partition = (table: string) => ({
  schedule: { cron: '5 * * * ? *', timeZone: 'UTC' },
  policy: { targets: [{ table, interval: 'day' as const, premake: 7 }] },
});

/**
 * The README's three-database example, exactly as written there (evaluated with the names the
 * config file has in scope), so what the README shows is what these tests synthesize.
 */
function readmeExample(): DatabaseConfig[] {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const block = /```ts\n(export const databases: DatabaseConfig\[\] = \[[\s\S]*?\n\];)\n```/.exec(readme)![1]!;
  const js = transformSync(block.replace('export const databases: DatabaseConfig[] =', 'const databases: DatabaseConfig[] ='), { loader: 'ts' }).code;
  return new Function('housekeeping', 'demoHousekeeping', 'Duration', `${js}\nreturn databases;`)(
    housekeeping,
    demoHousekeeping,
    Duration,
  ) as DatabaseConfig[];
}
const example = readmeExample();
// The example's three databases, and a fourth with the longest id there can be.
const fleet: DatabaseConfig[] = [
  ...example.filter((entry) => !entry.sandbox),
  { id: LONG_ID, secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:warehouse-db-StUvWx', jobs: { rollup: housekeeping.rollup } },
];
const SECRETS: Record<string, string> = Object.fromEntries(fleet.map((entry) => [entry.id, entry.secretArn!]));
const JOBS: Record<string, string[]> = Object.fromEntries(
  fleet.map((entry) => [entry.id, ['partition', 'archive', 'rollup'].filter((job) => job in entry.jobs)]),
);
const entryOf = (id: string) => fleet.find((entry) => entry.id === id)!;

type Resource = Synthesized['json']['Resources'][string];
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const props = (r: Resource) => r.Properties as Record<string, any>;
const ofType = (shape: Synthesized, type: string) =>
  Object.entries(shape.json.Resources).filter(([, r]) => r.Type === type) as Array<[string, Resource]>;

let three: Synthesized;
/** Our job functions, each with the database (PGHK_DATABASE_ID) and job (its entry's folder, from its name) it serves. */
let functions: Array<{ logicalId: string; database: string; job: string; resource: Resource }>;
beforeAll(() => {
  // The whole fleet, with cdk-nag: a finding nobody acknowledged fails this synth.
  three = synthStack('Fleet', { databases: fleet, deployment: { alarmEmail: 'platform@example.com' } });
  functions = ofType(three, 'AWS::Lambda::Function')
    .filter(([, r]) => props(r).Environment?.Variables?.PGHK_DATABASE_ID)
    .map(([logicalId, resource]) => ({
      logicalId,
      resource,
      database: props(resource).Environment.Variables.PGHK_DATABASE_ID as string,
      job: /-(partition|archive|rollup)$/.exec(props(resource).FunctionName)![1]!,
    }));
}, 240_000);

/** Every statement of the policies attached to a role. */
function roleStatements(
  shape: Synthesized,
  roleLogicalId: string,
): Array<{ Action: unknown; Resource: unknown; Condition?: Record<string, Record<string, unknown>> }> {
  return ofType(shape, 'AWS::IAM::Policy')
    .filter(([, p]) => (props(p).Roles as Array<{ Ref: string }>).some((role) => role.Ref === roleLogicalId))
    .flatMap(([, p]) => props(p).PolicyDocument.Statement);
}
const roleOf = (fn: Resource) => props(fn).Role['Fn::GetAtt'][0] as string;
const actions = (statement: { Action: unknown }) => [statement.Action].flat() as string[];

describe("the README's three databases (and a fourth with a 63-character id) in one stack", () => {
  it('the example is three databases and the sandbox: orders in a VPC, billing with its own key and topic, analytics in another account', () => {
    expect(example.map((entry) => entry.id)).toEqual(['demo', 'orders', 'billing', 'analytics']);
    expect(planFleet(example, { sandbox: false }).map((stack) => [stack.stackName, stack.databases.map((d) => d.id)])).toEqual([
      ['PgHousekeeping', ['orders', 'billing', 'analytics']],
    ]);
    expect(entryOf('analytics').secretArn).toBe(SHARED_SECRET);
  });

  it('one function per job per database, each told its database and given its own secret, named for both', () => {
    expect(functions.map((f) => `${f.database}/${f.job}`).sort()).toEqual(
      Object.entries(JOBS)
        .flatMap(([db, jobs]) => jobs.map((job) => `${db}/${job}`))
        .sort(),
    );
    for (const { database, job, resource } of functions) {
      const variables = props(resource).Environment.Variables;
      expect(variables.PGHK_DB_SECRET_ARN, database).toBe(SECRETS[database]);
      expect(props(resource).FunctionName).toBe(databaseNames('Fleet', database).function(job));
    }
    expect(props(functions.find((f) => f.database === 'orders' && f.job === 'archive')!.resource).FunctionName).toBe('Fleet-orders-archive');
    // Each function ships its own database's policy, and only it.
    for (const { logicalId, database, job } of functions) {
      const shipped = JSON.parse(readFileSync(join(three.assetDir(logicalId), 'policy.json'), 'utf8'));
      expect(shipped, `${database}/${job}`).toEqual(JSON.parse(JSON.stringify(entryOf(database).jobs[job as 'partition']!.policy)));
    }
    // Per database: its role, its network (billing's in the group it names).
    for (const { database, resource } of functions) {
      expect(props(resource).Environment.Variables.PGHK_DB_ROLE, database).toBe(entryOf(database).databaseRole);
      expect(Boolean(props(resource).VpcConfig), database).toBe(Boolean(entryOf(database).network));
    }
    expect(props(functions.find((f) => f.database === 'billing')!.resource).VpcConfig.SecurityGroupIds).toEqual(['sg-0123456789abcdef0']);
    three.template.resourceCountIs('AWS::EC2::SecurityGroup', 1);
  });

  it('IAM: each function may read the secret of the database it serves and no other; kms:Decrypt only on its key, through Secrets Manager, for that secret', () => {
    const allSecrets = Object.values(SECRETS);
    for (const { database, job, resource } of functions) {
      const statements = roleStatements(three, roleOf(resource));
      const secretStatements = statements.filter((s) => actions(s).some((a) => a.startsWith('secretsmanager:')));
      expect(secretStatements, `${database}/${job}`).toHaveLength(1);
      expect(secretStatements[0]!.Resource).toBe(SECRETS[database]);
      expect([...new Set(JSON.stringify(statements).match(/arn:aws:secretsmanager:[^"]+/g))].filter((arn) => allSecrets.includes(arn))).toEqual([
        SECRETS[database],
      ]);
      const kms = statements.filter((s) => actions(s).some((a) => a.startsWith('kms:')));
      const key = entryOf(database).kmsKeyArn;
      if (!key) {
        expect(kms, `${database}/${job}`).toEqual([]);
        continue;
      }
      expect(kms, `${database}/${job}`).toEqual([
        {
          Effect: 'Allow',
          Action: 'kms:Decrypt',
          Resource: key,
          Condition: {
            StringEquals: { 'kms:ViaService': 'secretsmanager.eu-west-1.amazonaws.com', 'kms:EncryptionContext:SecretARN': SECRETS[database] },
          },
        },
      ]);
      expect(
        statements.filter((s) => s.Resource === '*'),
        `${database}/${job}`,
      ).toEqual([]);
    }
  });

  it("outputs each database's function roles (what another account's secret and key policies name)", () => {
    const outputs = Object.entries(three.json.Outputs ?? {}).filter(([key]) => key.includes('FunctionRoleArns'));
    expect(outputs).toHaveLength(4);
    const [, analytics] = outputs.find(([key]) => key.startsWith('analyticsFunctionRoleArns'))!;
    const roles = functions.filter((f) => f.database === 'analytics').map((f) => ({ 'Fn::GetAtt': [roleOf(f.resource), 'Arn'] }));
    expect(analytics.Value).toEqual({ 'Fn::Join': ['', [roles[0], ',', roles[1]]] });
  });

  it('each schedule invokes the function of its own database, is named for it, and sends {}', () => {
    const schedules = ofType(three, 'AWS::Scheduler::Schedule');
    expect(schedules).toHaveLength(functions.length);
    for (const [, schedule] of schedules) {
      const target = functions.find((f) => f.logicalId === props(schedule).Target.Arn['Fn::GetAtt'][0])!;
      expect(props(schedule).Name).toBe(databaseNames('Fleet', target.database).schedule(target.job));
      expect(props(schedule).Description).toBe(`pg-housekeeper ${target.job} of database ${target.database}`);
      expect(props(schedule).Target.Input).toBe('{}');
    }
  });

  it('names stay within the limits for a 63-character id, distinct, and the same on every synth', () => {
    const names = ofType(three, 'AWS::Lambda::Function')
      .map(([, r]) => props(r).FunctionName as string | undefined)
      .filter(Boolean) as string[];
    const scheduleNames = ofType(three, 'AWS::Scheduler::Schedule').map(([, r]) => props(r).Name as string);
    for (const name of [...names, ...scheduleNames]) expect(name.length, name).toBeLessThanOrEqual(64);
    expect(new Set(names).size).toBe(names.length);
    expect(new Set(scheduleNames).size).toBe(scheduleNames.length);
    const long = databaseNames('Fleet', LONG_ID);
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toContain(`\`${databaseNames('PgHousekeeping', LONG_ID).function('partition')}\``);
    expect(readme).toContain(`--function-name ${databaseNames('PgHousekeeping', 'orders').function('archive')}\n`);
    // Cut short, a hash of the whole name, and the job whole.
    expect(long.function('partition')).toMatch(/^Fleet-analytics-warehouse-reporting-eu-west-1-[0-9a-f]{8}-partition$/);
    expect(long.function('partition')).toBe(databaseNames('Fleet', LONG_ID).function('partition'));
    // Two long ids that share their first 60 characters still get different names.
    expect(databaseNames('Fleet', `${LONG_ID.slice(0, 60)}-a`).function('rollup')).not.toBe(
      databaseNames('Fleet', `${LONG_ID.slice(0, 60)}-b`).function('rollup'),
    );
    expect(fitName(['a', 'b'], 64)).toBe('a-b');
    for (const [, alarm] of ofType(three, 'AWS::CloudWatch::Alarm')) expect(props(alarm).AlarmName.length).toBeLessThanOrEqual(255);
  });
});

describe('metrics, alarms, dashboard and saved queries of three databases', () => {
  const alarms = () => ofType(three, 'AWS::CloudWatch::Alarm').map(([id, r]) => ({ id, ...props(r) }) as Record<string, any>);
  const dimension = (alarm: Record<string, any>, name: string) =>
    (alarm.Dimensions as Array<{ Name: string; Value: unknown }> | undefined)?.find((d) => d.Name === name)?.Value;

  it('every alarm names its database, in its name and its description, and watches only that database', () => {
    const all = alarms();
    for (const [db, jobs] of Object.entries(JOBS)) {
      const own = all.filter((a) => a.AlarmName.startsWith(`Fleet ${db} `));
      // Errors, Failures, NotInvoked, Stale per job; PartitionsAheadLow with partition; RollupLagHigh with rollup.
      expect(own, db).toHaveLength(jobs.length * 4 + (jobs.includes('partition') ? 1 : 0) + (jobs.includes('rollup') ? 1 : 0));
      const ownFunctions = functions.filter((f) => f.database === db).map((f) => f.logicalId);
      for (const alarm of own) {
        expect(alarm.AlarmDescription, alarm.AlarmName).toContain(`of database ${db}:`);
        if (alarm.Namespace === 'PgHousekeeper') expect(dimension(alarm, 'database'), alarm.AlarmName).toBe(db);
        if (alarm.Namespace === 'AWS/Lambda')
          expect(ownFunctions, alarm.AlarmName).toContain((dimension(alarm, 'FunctionName') as { Ref: string }).Ref);
      }
    }
    expect(all.filter((a) => !Object.keys(JOBS).some((db) => a.AlarmName.startsWith(`Fleet ${db} `)))).toEqual([]);
  });

  it('distinct metric dimensions per database: no two databases share a metric an alarm watches', () => {
    const watched = alarms()
      .filter((a) => a.Namespace === 'PgHousekeeper')
      .map((a) => ({ db: dimension(a, 'database') as string, key: JSON.stringify([a.MetricName, a.Dimensions]) }));
    for (const { db, key } of watched) expect(watched.filter((w) => w.key === key).map((w) => w.db)).toEqual([db]);
    expect(new Set(watched.map((w) => w.db))).toEqual(new Set(Object.keys(JOBS)));
  });

  it("alarms notify the deployment's topic, and a database's own team topic besides", () => {
    const [emailTopic] = ofType(three, 'AWS::SNS::Topic')[0]!;
    for (const alarm of alarms()) {
      const expected = alarm.AlarmName.startsWith('Fleet billing ') ? [{ Ref: emailTopic }, entryOf('billing').alarmTopicArn] : [{ Ref: emailTopic }];
      expect(alarm.AlarmActions, alarm.AlarmName).toEqual(expected);
    }
    three.template.resourceCountIs('AWS::SNS::Topic', 1);
  });

  it('one dashboard, one row per database: every widget of a row is titled with its database and graphs only its metrics', () => {
    const dashboards = ofType(three, 'AWS::CloudWatch::Dashboard');
    expect(dashboards).toHaveLength(1);
    const widgets = dashboardWidgets(props(dashboards[0]![1]).DashboardBody);
    const rows = new Map<number, typeof widgets>();
    for (const widget of widgets) rows.set(widget.y, [...(rows.get(widget.y) ?? []), widget]);
    expect(rows.size).toBe(4);
    const order = [...rows.keys()].sort((a, b) => a - b);
    expect(order.map((y) => rows.get(y)![0]!.properties.title.split(':')[0])).toEqual(['orders', 'billing', 'analytics', LONG_ID]);
    expect(rows.get(order[0]!)).toHaveLength(6);
    for (const y of order) {
      const row = rows.get(y)!;
      const db = row[0]!.properties.title.split(':')[0];
      expect(row.reduce((width, w) => width + w.width, 0)).toBeLessThanOrEqual(24);
      for (const widget of row) {
        expect(widget.properties.title.startsWith(`${db}: `)).toBe(true);
        const text = JSON.stringify(widget.properties.metrics);
        for (const other of Object.keys(JOBS).filter((o) => o !== db)) expect(text, widget.properties.title).not.toContain(`"database","${other}"`);
        if (text.includes('"PgHousekeeper"')) expect(text).toContain(`"database","${db}"`);
      }
    }
  });

  it('saved queries per database: named under its id, over its own log groups, filtered by it', () => {
    const queries = ofType(three, 'AWS::Logs::QueryDefinition').map(([, q]) => props(q));
    expect(queries).toHaveLength(12);
    for (const [db, jobs] of Object.entries(JOBS)) {
      const own = queries.filter((q) => q.Name.startsWith(`pg-housekeeper/Fleet/${db}/`));
      expect(own.map((q) => q.Name.split('/').at(-1)).sort(), db).toEqual(['failed-runs', 'run-summaries', 'slowest-targets']);
      const ownLogGroups = functions.filter((f) => f.database === db).map((f) => props(f.resource).LoggingConfig.LogGroup.Ref);
      for (const query of own) {
        expect(query.QueryString).toContain(`filter database = "${db}"`);
        expect(query.LogGroupNames.map((g: { Ref: string }) => g.Ref).sort()).toEqual(ownLogGroups.sort());
        expect(query.LogGroupNames).toHaveLength(jobs.length);
      }
    }
  });
});

/** The dashboard's widgets, with CloudFormation references (function names) left as `{"Ref": ...}` text. */
function dashboardWidgets(body: unknown): Array<{ x: number; y: number; width: number; properties: { title: string; metrics: unknown[] } }> {
  const parts = (body as { 'Fn::Join': [string, unknown[]] })['Fn::Join'][1];
  const text = parts.map((part) => (typeof part === 'string' ? part : `REF:${JSON.stringify(part).replace(/"/g, "'")}`)).join('');
  return JSON.parse(text).widgets;
}

describe('a fleet refuses at synth, naming the entry and field', () => {
  const entry = (id: string, more: Partial<DatabaseConfig> = {}): DatabaseConfig => ({
    id,
    secretArn: ORDERS_SECRET,
    jobs: { partition: partition('public.events') },
    ...more,
  });

  it.each(
    (
      [
        [[entry('orders'), entry('billing'), entry('orders')], 'databases[2].id: "orders" is also databases[0].id; each database needs its own id'],
        [[entry('Orders')], 'databases[0].id: "Orders" must be lowercase letters, digits and single hyphens'],
        [[entry('a'.repeat(64))], 'databases[0].id: "aaaa'],
        [
          [entry('orders', { secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders-db' })],
          'databases[0].secretArn: arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders-db is not a complete secret ARN',
        ],
        [
          [entry('orders', { kmsKeyArn: 'arn:aws:kms:eu-west-1:123456789012:alias/orders' })],
          'databases[0].kmsKeyArn: arn:aws:kms:eu-west-1:123456789012:alias/orders is not a KMS key ARN',
        ],
        [
          [entry('orders', { kmsKeyArn: 'arn:aws:kms:eu-central-1:123456789012:key/1111aaaa-2222-4bbb-8333-cccc4444dddd' })],
          'databases[0].kmsKeyArn: the key is in eu-central-1, the secret in eu-west-1',
        ],
        [[{ id: 'orders', jobs: {} } as DatabaseConfig], 'databases[0].secretArn: is required'],
        [[entry('orders', { jobs: {} })], 'databases[0].jobs: deploys no job'],
        [[entry('orders', { stack: 'Pg-Housekeeping-2' })], 'databases[0].stack: "Pg-Housekeeping-2" must be letters and digits'],
        [[entry('orders', { network: { vpcId: 'vpc-0abc', subnetIds: [] } })], 'databases[0].network.subnetIds: at least one private subnet id'],
        [[entry('orders', { secretsArn: ORDERS_SECRET } as never)], 'databases[0].secretsArn: is not a database setting'],
      ] as Array<[DatabaseConfig[], string]>
    ).map(([databases, message]) => ({ databases, message })),
  )('$message', ({ databases, message }) => {
    expect(() => planFleet(databases, { sandbox: false })).toThrowError(message);
    // The same entries handed to the stack directly fail the same way.
    expect(() => new HousekeepingStack(new App({ context: CDK_CONTEXT }), 'Bad', { databases, env: ENV })).toThrowError(message);
  });

  it('a bad policy names the database it belongs to', () => {
    const bad = entry('orders', {
      jobs: { partition: { ...partition('public.events'), policy: { targets: [{ table: 'public.events', interval: 'day', premake: 0 }] } } },
    });
    expect(() => new HousekeepingStack(new App({ context: CDK_CONTEXT }), 'Bad', { databases: [entry('billing'), bad], env: ENV })).toThrowError(
      /^orders\.partition\.policy\.targets\[0\]\.premake: Too small/,
    );
  });

  it("a secret in another account without its customer-managed key, or in another region, at synth (not at the first night's run)", () => {
    const stackOf = (databases: DatabaseConfig[]) => () => new HousekeepingStack(new App({ context: CDK_CONTEXT }), 'Bad', { databases, env: ENV });
    expect(stackOf([entry('shared', { secretArn: SHARED_SECRET })])).toThrowError(
      'shared.kmsKeyArn: the secret is in account 210987654321, this stack in 123456789012; a secret read from another account must be encrypted with a customer-managed KMS key',
    );
    expect(stackOf([entry('far', { secretArn: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:far-db-AbCdEf' })])).toThrowError(
      'far.secretArn: the secret is in us-east-1, this stack deploys to eu-west-1',
    );
  });

  it("an alarm topic in another region, at synth (CloudWatch alarms notify only their own region's topics; the deploy would fail)", () => {
    const farTopic = 'arn:aws:sns:us-east-1:123456789012:billing-oncall';
    const stackOf =
      (databases: DatabaseConfig[], deployment = {}) =>
      () =>
        new HousekeepingStack(new App({ context: CDK_CONTEXT }), 'Bad', { databases, deployment, env: ENV });
    expect(stackOf([entry('orders'), entry('billing', { alarmTopicArn: farTopic })])).toThrowError(
      'billing.alarmTopicArn: the topic is in us-east-1, this stack deploys to eu-west-1',
    );
    expect(stackOf([entry('orders')], { alarmTopicArn: farTopic })).toThrowError(
      'alarmTopicArn: the topic is in us-east-1, this stack deploys to eu-west-1',
    );
    // The region's own topic, in another account, is fine (its topic policy must let CloudWatch publish).
    expect(stackOf([entry('orders', { alarmTopicArn: 'arn:aws:sns:eu-west-1:210987654321:oncall' })])).not.toThrow();
  });

  it('two PgHousekeeping with one databaseId in a stack: the second fails, naming the first', () => {
    const stack = new Stack(new App({ context: CDK_CONTEXT }), 'Twins', { env: ENV });
    const secret = Secret.fromSecretCompleteArn(stack, 'Secret', ORDERS_SECRET);
    new PgHousekeeping(stack, 'Housekeeping', { databaseSecret: secret, partition: partition('public.a') });
    expect(() => new PgHousekeeping(stack, 'Housekeeping2', { databaseSecret: secret, partition: partition('public.b') })).toThrowError(
      'Housekeeping2.databaseId: "main" is also the databaseId of Twins/Housekeeping; give each database its own id',
    );
  });
});

describe('how many databases fit in a stack', () => {
  // The largest database: three jobs, in a VPC, with the security group made for it. Identical
  // policies keep the bundling cached, so dozens of functions build in seconds.
  const full = (id: string): DatabaseConfig => ({ ...entryOf('orders'), id });
  const withGroup = (id: string): DatabaseConfig => ({
    ...entryOf('orders'),
    id,
    network: { ...entryOf('orders').network!, securityGroupId: 'sg-0123456789abcdef0' },
  });
  const stackOf = (count: number, entry = full) =>
    new HousekeepingStack(new App({ context: CDK_CONTEXT }), 'Count', {
      databases: Array.from({ length: count }, (_, i) => entry(`db-${i}`)),
      deployment: { alarmEmail: 'platform@example.com' },
      env: ENV,
    });
  const resources = (stack: Stack) => stack.node.findAll().filter((c) => CfnResource.isCfnResource(c)).length;

  it('the README says how many resources a database makes and how many databases fit; one more fails the synth, saying what to do', () => {
    const [one, two] = [stackOf(1), stackOf(2)];
    const perDatabase = resources(two) - resources(one);
    const shared = resources(one) - perDatabase;
    const fit = Math.floor((STACK_RESOURCE_LIMIT - shared) / perDatabase);
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(entryOf('orders').jobs).toBe(housekeeping);
    expect(readme).toContain(
      `**${perDatabase} resources** per database (${resources(stackOf(2, withGroup)) - resources(stackOf(1, withGroup))} with a \`securityGroupId\` given;`,
    );
    expect(readme).toContain(`the stack\nadds ${shared} of its own`);
    expect(readme).toContain(`**${fit} databases** fit in one stack`);
    expect(stackOf(fit).node.validate()).toEqual([]);
    const over = stackOf(fit + 1);
    expect(readme).toContain(`holds ${fit + 1} databases, ${resources(over)} resources; CloudFormation allows 500 in one stack.`);
    expect(over.node.validate()).toEqual([
      `Count holds ${fit + 1} databases, ${resources(over)} resources; CloudFormation allows 500 in one stack. ` +
        `Move some databases to another stack: stack: 'CountB' on their entries in infra/housekeeping.config.ts, then cdk deploy --all (README, "How many databases fit in a stack")`,
    ]);
  }, 240_000);
});

describe('the config file and the app', () => {
  it('the shipped list holds only the sandbox entry; cdk deploy -c demo=true deploys it, plain cdk deploy a listed fleet by stack', () => {
    expect(shippedDatabases).toEqual([{ id: 'demo', sandbox: true, jobs: demoHousekeeping }]);
    const demo = readContext((key) => ({ demo: 'true' })[key], shippedDatabases);
    expect(demo.stacks).toEqual([{ stackId: 'PgHousekeepingSandbox', databases: shippedDatabases }]);
    const listed = [...shippedDatabases, ...fleet, { ...fleet[0]!, id: 'orders-eu', stack: 'PgHousekeepingEu' }];
    const plain = readContext(() => undefined, listed);
    expect(plain.stacks.map((s) => [s.stackId, s.databases!.map((d) => d.id)])).toEqual([
      ['PgHousekeeping', ['orders', 'billing', 'analytics', LONG_ID]],
      ['PgHousekeepingEu', ['orders-eu']],
    ]);
    expect(() => readContext((key) => ({ secretArn: ORDERS_SECRET })[key], listed)).toThrowError(
      /^secretArn: deploys one database, but infra\/housekeeping\.config\.ts lists orders, billing/,
    );
    expect(() => readContext((key) => ({ vpcId: 'vpc-0abc' })[key], listed)).toThrowError(/^vpcId: goes with -c secretArn; each database listed/);
  });

  it('-c secretArn=… is a fleet of one: database "main", keeping the log groups, queues and alarm topic a one-database stack always had', () => {
    const { stacks, deployment } = readContext((key) => ({ secretArn: ORDERS_SECRET, alarmEmail: 'oncall@example.com' })[key], shippedDatabases);
    expect(stacks).toEqual([
      {
        stackId: 'PgHousekeeping',
        target: { kind: 'existing', secretArn: ORDERS_SECRET, vpcId: undefined, subnetIds: undefined, securityGroupId: undefined },
      },
    ]);
    const stack = new HousekeepingStack(new App({ context: CDK_CONTEXT }), 'PgHousekeeping', { ...stacks[0]!, deployment, env: ENV });
    expect(Object.keys(stack.databases)).toEqual(['main']);
    const logicalIds = stack.node
      .findAll()
      .filter((c) => CfnResource.isCfnResource(c))
      .map((c) => stack.getLogicalId(c as CfnResource));
    // The logical ids of the stateful resources before fleets (main at bcd8c8c): an upgrade updates them in place.
    expect(logicalIds).toEqual(
      expect.arrayContaining([
        'HousekeepingPartitionLogs242863D1',
        'HousekeepingArchiveLogs1811614E',
        'HousekeepingRollupLogs3C020911',
        'HousekeepingPartitionFailuresC9CDA886',
        'HousekeepingArchiveFailuresF6E43A64',
        'HousekeepingRollupFailures3BBDADD8',
        'HousekeepingAlarmsKey461388F5',
        'HousekeepingAlarms5A91E152',
      ]),
    );
  });
});
