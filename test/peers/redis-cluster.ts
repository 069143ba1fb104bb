import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.js';
import { ownServerArgs } from './redis.js';

const run = promisify(execFile);

export interface RedisClusterOptions {
  /** Serve TLS only (no plaintext port), with a certificate from a CA of our own, as managed clusters do. */
  tls?: boolean;
  /** Require this password (ElastiCache's auth token) from clients and between nodes. */
  password?: string;
}

export interface RedisClusterPeer {
  /** REDIS_URL for fleetbot: every master as a seed node, with the scheme the cluster speaks. */
  url: string;
  /** The PEM file of the CA that signed the nodes' certificates (TLS only), for REDIS_TLS_CA_FILE. */
  caFile?: string;
  ports: number[];
  stop(): Promise<void>;
}

/**
 * A real Redis Cluster of three masters on loopback (no replicas: tests need slots spread over
 * several servers, not failover), built the documented way: `redis-server --cluster-enabled yes`
 * per node, joined with `redis-cli --cluster create`. Returns once every node reports the cluster ok.
 */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterPeer> {
  const dir = await mkdtemp(join(tmpdir(), 'fleetbot-cluster-'));
  const tlsFiles = options.tls ? await makeCertificates(dir) : undefined;
  const ports = [await freePort(), await freePort(), await freePort()];
  const children: ChildProcess[] = [];
  const stop = async () => {
    await Promise.all(children.map(stopChild));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      // The cluster bus defaults to port + 10000, which may not exist above 55535: pick one that does.
      const busPort = await freePort();
      const args = [
        ...(tlsFiles
          ? [
              '--port',
              '0',
              '--tls-port',
              String(port),
              '--tls-cluster',
              'yes',
              '--tls-replication',
              'yes',
              '--tls-cert-file',
              tlsFiles.cert,
              '--tls-key-file',
              tlsFiles.key,
              '--tls-ca-cert-file',
              tlsFiles.ca,
              '--tls-auth-clients',
              'no',
            ]
          : ['--port', String(port)]),
        ...(options.password ? ['--requirepass', options.password, '--masterauth', options.password] : []),
        ...ownServerArgs(dir),
        '--cluster-enabled',
        'yes',
        '--cluster-port',
        String(busPort),
        '--cluster-config-file',
        `nodes-${port}.conf`,
        '--maxmemory-policy',
        'noeviction',
      ];
      children.push(spawn('redis-server', args, { stdio: 'ignore' }));
    }
    const cli = (port: number, ...args: string[]) =>
      run('redis-cli', [
        ...cliAuth(tlsFiles?.ca, options.password),
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        ...args,
      ]);
    await waitFor(
      async () => (await cli(ports[0] as number, 'ping')).stdout.includes('PONG'),
      'the nodes to start',
      ports.map(String),
    );
    for (const port of ports.slice(1))
      await waitFor(async () => (await cli(port, 'ping')).stdout.includes('PONG'), 'the nodes to start', [
        String(port),
      ]);
    await run('redis-cli', [
      ...cliAuth(tlsFiles?.ca, options.password),
      '--cluster',
      'create',
      ...ports.map((p) => `127.0.0.1:${p}`),
      '--cluster-replicas',
      '0',
      '--cluster-yes',
    ]);
    for (const port of ports)
      await waitFor(
        async () => (await cli(port, 'cluster', 'info')).stdout.includes('cluster_state:ok'),
        'the cluster to agree on its slots',
        [String(port)],
      );
  } catch (error) {
    await stop();
    throw error;
  }
  const scheme = tlsFiles ? 'rediss' : 'redis';
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : '';
  return {
    url: ports.map((p) => `${scheme}://${auth}127.0.0.1:${p}`).join(','),
    caFile: tlsFiles?.ca,
    ports,
    stop,
  };
}

function cliAuth(ca: string | undefined, password: string | undefined): string[] {
  return [
    ...(ca ? ['--tls', '--cacert', ca] : []),
    ...(password ? ['-a', password, '--no-auth-warning'] : []),
  ];
}

/** A CA and a server certificate for 127.0.0.1, as openssl makes them. */
async function makeCertificates(dir: string): Promise<{ ca: string; cert: string; key: string }> {
  const file = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => run('openssl', args);
  await openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=fleetbot test CA',
    '-keyout',
    file('ca.key'),
    '-out',
    file('ca.crt'),
  );
  await writeFile(file('san.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=127.0.0.1',
    '-keyout',
    file('redis.key'),
    '-out',
    file('redis.csr'),
  );
  await openssl(
    'x509',
    '-req',
    '-in',
    file('redis.csr'),
    '-CA',
    file('ca.crt'),
    '-CAkey',
    file('ca.key'),
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    file('san.cnf'),
    '-out',
    file('redis.crt'),
  );
  return { ca: file('ca.crt'), cert: file('redis.crt'), key: file('redis.key') };
}

async function waitFor(check: () => Promise<boolean>, what: string, where: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (error) {
      last = error;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(
    `Redis Cluster: timed out waiting for ${what} (${where.join(', ')}): ${String(last ?? '')}`,
  );
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}
