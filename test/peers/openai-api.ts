import { createServer } from 'node:http';

export interface FakeOpenAi {
  /** Base URL, as OPENAI_BASE_URL expects it (the server answers under /v1). */
  url: string;
  /** Keys that authenticate; every other bearer gets 401 as from api.openai.com. */
  accept(key: string): void;
  /** How many model-list requests arrived (each is one live check). */
  requests(): number;
  close(): Promise<void>;
}

/** Just enough of an OpenAI-compatible API to check a key: GET /v1/models with a bearer token. */
export async function startFakeOpenAi(): Promise<FakeOpenAi> {
  const keys = new Set<string>();
  let count = 0;
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url !== '/v1/models') {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"Not found"}}');
      return;
    }
    count++;
    const key = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!key || !keys.has(key)) {
      res.writeHead(401, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          error: {
            message: 'Incorrect API key provided.',
            type: 'invalid_request_error',
            code: 'invalid_api_key',
          },
        }),
      );
      return;
    }
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ object: 'list', data: [{ id: 'gpt-4o', object: 'model', owned_by: 'openai' }] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    accept: (key) => keys.add(key),
    requests: () => count,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
