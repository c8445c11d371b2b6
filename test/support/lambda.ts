import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { resetSecretCache } from '../../shared/secrets';

/** A Lambda-like context whose remaining time counts down from `remainingMs`. */
export function lambdaContext(remainingMs = 60_000): Context {
  const deadline = Date.now() + remainingMs;
  return {
    awsRequestId: 'c6af9ac6-7b61-11e6-9a41-93e812345678',
    functionName: 'pg-housekeeper-test',
    getRemainingTimeInMillis: () => deadline - Date.now(),
  } as unknown as Context;
}

export function scheduledEvent(detail: unknown) {
  return {
    version: '0',
    id: '53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa',
    'detail-type': 'Scheduled Event',
    source: 'aws.events',
    account: '123456789012',
    time: '2026-11-23T00:05:00Z',
    region: 'eu-west-1',
    resources: ['arn:aws:events:eu-west-1:123456789012:rule/pg-housekeeper'],
    detail,
  };
}

/**
 * Points handlers at the test database as a deployed Lambda is pointed at its own: the
 * credentials as an RDS-shaped secret behind a mocked Secrets Manager, its ARN in
 * PGHK_DB_SECRET_ARN, and no secret cached from an earlier test. Returns the undo.
 */
export function serveDatabaseSecret(url: string, secretArn: string): () => void {
  const parsed = new URL(url);
  resetSecretCache();
  const secrets = mockClient(SecretsManagerClient);
  secrets.on(GetSecretValueCommand, { SecretId: secretArn }).resolves({
    SecretString: JSON.stringify({
      host: parsed.hostname,
      port: Number(parsed.port),
      username: decodeURIComponent(parsed.username),
      password: decodeURIComponent(parsed.password),
      dbname: parsed.pathname.slice(1),
    }),
  });
  process.env.PGHK_DB_SECRET_ARN = secretArn;
  return () => {
    delete process.env.PGHK_DB_SECRET_ARN;
    secrets.restore();
  };
}
