import {
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  request,
  type ServerResponse,
} from 'node:http';
import type { AwsCall } from './wire.js';
import { items, parseXml, path, text } from './xml.js';

export interface UpstreamResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface MotoInstance {
  instanceId: string;
  state: string;
  privateIpAddress: string | undefined;
  privateDnsName: string | undefined;
  tags: Record<string, string>;
}

export interface Upstream {
  /** Streams moto's answer straight back; resolves with its status once the body has been sent. */
  pipe(call: AwsCall, res: ServerResponse): Promise<number>;
  /** Buffers moto's answer so the simulator can read or rewrite it; `body` overrides the request body. */
  fetch(call: AwsCall, body?: Buffer): Promise<UpstreamResponse>;
  /**
   * The instances moto holds for the account and region (only those of `instanceIds` when given),
   * read directly (no faults, no call log).
   */
  describeInstances(
    accountId: string,
    region: string,
    instanceIds?: readonly string[],
  ): Promise<MotoInstance[]>;
  /** Aborts whatever is still in flight, so closing the simulator never waits on moto. */
  abortAll(): void;
}

// Hop-by-hop headers describe one connection, not the message, so they never cross the proxy.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']);

export function createUpstream(motoUrl: string): Upstream {
  const target = new URL(motoUrl);
  const inFlight = new Set<ClientRequest>();

  function send(method: string, url: string, headers: IncomingHttpHeaders, body: Buffer) {
    const outgoing: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(headers)) {
      if (value !== undefined && !HOP_BY_HOP.has(name)) outgoing[name] = value;
    }
    outgoing['content-length'] = String(body.length);
    return new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(
        { hostname: target.hostname, port: target.port, method, path: url, headers: outgoing },
        (res) => {
          res.once('close', () => inFlight.delete(req));
          resolve(res);
        },
      );
      inFlight.add(req);
      req.on('error', (error) => {
        inFlight.delete(req);
        reject(error);
      });
      req.end(body);
    });
  }

  function responseHeaders(headers: IncomingHttpHeaders): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(headers)) {
      if (value === undefined || HOP_BY_HOP.has(name)) continue;
      out[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    return out;
  }

  async function fetchRaw(method: string, url: string, headers: IncomingHttpHeaders, body: Buffer) {
    const res = await send(method, url, headers, body);
    const chunks: Buffer[] = [];
    for await (const chunk of res) chunks.push(chunk as Buffer);
    const out = responseHeaders(res.headers);
    delete out['content-length'];
    return { status: res.statusCode ?? 502, headers: out, body: Buffer.concat(chunks) };
  }

  return {
    async pipe(call, res) {
      const upstream = await send(call.method, call.url, call.headers, call.body);
      const status = upstream.statusCode ?? 502;
      res.writeHead(status, responseHeaders(upstream.headers));
      await new Promise<void>((resolve) => {
        upstream.pipe(res);
        res.once('close', () => {
          // A caller that hung up must not leave moto's answer paused on an open socket.
          upstream.destroy();
          resolve();
        });
        upstream.on('error', () => {
          res.destroy();
          resolve();
        });
      });
      return status;
    },
    fetch(call, body) {
      return fetchRaw(call.method, call.url, call.headers, body ?? call.body);
    },
    async describeInstances(accountId, region, instanceIds) {
      // An instance-id filter, not InstanceId.N: an unknown id is left out instead of failing the read.
      const form = new URLSearchParams({ Action: 'DescribeInstances', Version: '2016-11-15' });
      if (instanceIds) {
        form.set('Filter.1.Name', 'instance-id');
        for (const [i, id] of instanceIds.entries()) form.set(`Filter.1.Value.${i + 1}`, id);
      }
      const response = await fetchRaw(
        'POST',
        '/',
        {
          'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
          // moto routes by the credential scope; it does not check signatures unless auth is switched on.
          authorization: `AWS4-HMAC-SHA256 Credential=testing/20240101/${region}/ec2/aws4_request, SignedHeaders=host, Signature=0`,
          'x-moto-account-id': accountId,
        },
        Buffer.from(form.toString()),
      );
      if (response.status !== 200) {
        throw new Error(`moto DescribeInstances answered ${response.status}: ${response.body.toString()}`);
      }
      return parseInstances(response.body.toString('utf8'));
    },
    abortAll() {
      for (const req of inFlight) req.destroy();
      inFlight.clear();
    },
  };
}

function parseInstances(xml: string): MotoInstance[] {
  const { root } = parseXml(xml);
  return items(path(root, 'reservationSet')).flatMap((reservation) =>
    items(path(reservation, 'instancesSet')).map((item) => ({
      instanceId: text(path(item, 'instanceId')) ?? '',
      state: text(path(item, 'instanceState', 'name')) ?? '',
      privateIpAddress: text(path(item, 'privateIpAddress')),
      privateDnsName: text(path(item, 'privateDnsName')),
      tags: Object.fromEntries(
        items(path(item, 'tagSet')).map((tag) => [
          text(path(tag, 'key')) ?? '',
          text(path(tag, 'value')) ?? '',
        ]),
      ),
    })),
  );
}
