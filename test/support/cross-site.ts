import * as http from 'node:http';

/** A POST as a web page on the admin host could make it: any headers, a text body. Resolves with the status. */
export function rawPost(address: string, path: string, headers: Record<string, string>, body: string): Promise<{ status: number; body: string }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port, path, method: 'POST', headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/**
 * What a browser sends for a cross-site "simple" POST (no CORS preflight) and a DNS rebinding
 * page: each must be refused (403) by a control endpoint.
 */
export function browserRequests(address: string): Array<{ what: string; headers: Record<string, string> }> {
  const host = address;
  return [
    { what: 'a cross-site form post (foreign Origin, text/plain)', headers: { host, origin: 'http://evil.example', 'content-type': 'text/plain' } },
    { what: 'a foreign Origin with a JSON body', headers: { host, origin: 'http://evil.example', 'content-type': 'application/json' } },
    { what: 'a DNS-rebinding page (foreign Host, no Origin)', headers: { host: 'evil.example:80', 'content-type': 'application/json' } },
    { what: 'a text/plain body without Origin', headers: { host, 'content-type': 'text/plain' } },
    { what: 'a urlencoded form body', headers: { host, 'content-type': 'application/x-www-form-urlencoded' } },
  ];
}
