import { createServer, type Server } from 'node:http';

interface FakeInvocation {
  functionName: string;
  invocationType: string;
  payload: any;
  /** Signed with SigV4, as the real API requires. */
  authorized: boolean;
}

/**
 * A loopback stand-in for the Lambda Invoke API, reached through the SDK's own endpoint override
 * (AWS_ENDPOINT_URL_LAMBDA), so the bundle's real client, signer and HTTP path run. It accepts
 * every asynchronous invocation (202) and records it; the test then runs each one itself.
 */
export async function startFakeLambda() {
  const calls: FakeInvocation[] = [];
  const server: Server = createServer((request, response) => {
    let body = '';
    request.on('data', (chunk) => (body += chunk));
    request.on('end', () => {
      const match = /^\/2015-03-31\/functions\/([^/]+)\/invocations/.exec(request.url ?? '');
      if (request.method !== 'POST' || !match) {
        response.statusCode = 404;
        response.end(JSON.stringify({ Type: 'User', message: `no route ${request.method} ${request.url}` }));
        return;
      }
      calls.push({
        functionName: decodeURIComponent(match[1]!),
        invocationType: String(request.headers['x-amz-invocation-type'] ?? 'RequestResponse'),
        payload: body ? JSON.parse(body) : undefined,
        authorized: String(request.headers.authorization ?? '').startsWith('AWS4-HMAC-SHA256'),
      });
      response.statusCode = 202;
      response.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { url: `http://127.0.0.1:${port}`, calls, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}
