import * as net from 'node:net';

/**
 * A bare Node.js byte relay, for `bench speed`'s `node-relay` mode: each client connection gets
 * its own server connection and the bytes are piped both ways — no framing, no pooling, no
 * telemetry. It is what any proxy written in Node pays per operation before doing anything
 * (the same event loop, streams and one write per message as mongoplex's TCP path), measured
 * beside Envoy's tcp_proxy, which does the same in C++.
 *
 * `node dist/bench/node-relay.js HOST PORT`: listens on a free loopback port and prints
 * `{"port": N}` on stdout.
 */

function relay(client: net.Socket, host: string, port: number): void {
  const server = net.connect({ host, port, noDelay: true });
  client.setNoDelay(true);
  const close = (): void => {
    client.destroy();
    server.destroy();
  };
  client.on('error', close).on('close', close);
  server.on('error', close).on('close', close);
  client.pipe(server);
  server.pipe(client);
}

function main(): void {
  const [host, portText] = process.argv.slice(2);
  const port = Number(portText);
  if (!host || !(port > 0)) {
    console.error('usage: node-relay HOST PORT');
    process.exit(2);
  }
  const listener = net.createServer((c) => relay(c, host, port));
  listener.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: (listener.address() as net.AddressInfo).port })));
  process.on('SIGTERM', () => process.exit(0));
}

main();
