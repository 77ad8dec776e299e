/**
 * A bare Node.js TCP relay, for the benchmark only: the floor under any proxy written for this runtime. Each
 * accepted connection gets one connection to the upstream, and bytes go each way as they arrive (`setNoDelay` on
 * both, as the gateway does) — no parsing, no policy, no audit. What the gateway costs above this is its own work;
 * what this costs above PgBouncer is Node's (event loop, streams, one JS call per read and write).
 *
 * Run: node --import tsx bench/node-relay.ts <upstream host> <upstream port>; prints the port it listens on.
 */
import { connect, createServer } from 'node:net';

const [host, portText] = process.argv.slice(2);
const upstreamPort = Number(portText);
if (!host || !Number.isInteger(upstreamPort)) {
  process.stderr.write('usage: node-relay <upstream host> <upstream port>\n');
  process.exit(2);
}

const server = createServer((client) => {
  const upstream = connect(upstreamPort, host);
  client.setNoDelay(true);
  upstream.setNoDelay(true);
  client.on('data', (chunk: Buffer) => upstream.write(chunk));
  upstream.on('data', (chunk: Buffer) => client.write(chunk));
  client.on('close', () => upstream.destroy());
  upstream.on('close', () => client.destroy());
  client.on('error', () => upstream.destroy());
  upstream.on('error', () => client.destroy());
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the relay has no TCP address');
  process.stdout.write(`${address.port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
