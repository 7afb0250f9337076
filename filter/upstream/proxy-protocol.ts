import * as net from 'node:net';

/** PROXY protocol v2 (HAProxy spec): how mongoplex names the member an Envoy egress listener should dial. */
const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const VERSION_2_PROXY = 0x21;
const TCP_OVER_IPV4 = 0x11;
const TCP_OVER_IPV6 = 0x21;

export interface Endpoint {
  readonly ip: string;
  readonly port: number;
}

function ipv4Bytes(ip: string): Buffer {
  return Buffer.from(ip.split('.').map(Number));
}

function ipv6Bytes(ip: string): Buffer {
  const [head = '', tail = ''] = ip.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The header to send first on a connection whose destination is `destination`. */
export function proxyV2Header(source: Endpoint, destination: Endpoint): Buffer {
  const v6 = net.isIPv6(destination.ip);
  if (!v6 && !net.isIPv4(destination.ip)) throw new Error(`PROXY protocol needs an IP address, got '${destination.ip}'`);
  const src = net.isIP(source.ip) === (v6 ? 6 : 4) ? source : { ip: v6 ? '::' : '0.0.0.0', port: 0 };
  const addrs = v6
    ? Buffer.concat([ipv6Bytes(src.ip), ipv6Bytes(destination.ip), Buffer.alloc(4)])
    : Buffer.concat([ipv4Bytes(src.ip), ipv4Bytes(destination.ip), Buffer.alloc(4)]);
  addrs.writeUInt16BE(src.port, addrs.length - 4);
  addrs.writeUInt16BE(destination.port, addrs.length - 2);
  const head = Buffer.alloc(4);
  head[0] = VERSION_2_PROXY;
  head[1] = v6 ? TCP_OVER_IPV6 : TCP_OVER_IPV4;
  head.writeUInt16BE(addrs.length, 2);
  return Buffer.concat([SIGNATURE, head, addrs]);
}
