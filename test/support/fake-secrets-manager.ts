import { createServer, type Server } from 'node:http';

/**
 * A loopback stand-in for the Secrets Manager API, reached through the SDK's own endpoint
 * override (AWS_ENDPOINT_URL_SECRETS_MANAGER), so the real client, signer and HTTP path run.
 * It answers GetSecretValue from `secrets` and records each call.
 */
export async function startFakeSecretsManager(secrets: Record<string, string>) {
  const calls: Array<{ target: string; secretId: string; authorized: boolean }> = [];
  const server: Server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      const target = String(request.headers['x-amz-target'] ?? '');
      const { SecretId: secretId = '' } = body ? (JSON.parse(body) as { SecretId?: string }) : {};
      calls.push({ target, secretId, authorized: String(request.headers.authorization ?? '').startsWith('AWS4-HMAC-SHA256') });
      const secret = secrets[secretId];
      response.setHeader('content-type', 'application/x-amz-json-1.1');
      if (target !== 'secretsmanager.GetSecretValue' || secret === undefined) {
        response.statusCode = 400;
        response.end(JSON.stringify({ __type: 'ResourceNotFoundException', message: `no secret ${secretId}` }));
        return;
      }
      response.end(JSON.stringify({ ARN: secretId, Name: 'db', SecretString: secret, VersionId: 'v1', VersionStages: ['AWSCURRENT'] }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, calls, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
