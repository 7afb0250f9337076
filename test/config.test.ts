import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ConfigError, environmentVariables, loadConfig } from '../filter/config';
import { configurationPage, settingsReference } from '../filter/config/reference';

const MAIN = path.resolve(__dirname, '..', 'filter', 'main.js');

function tempFile(name: string, text: string): string {
  const f = path.join(mkdtempSync(path.join(tmpdir(), 'mongoplex-config-')), name);
  writeFileSync(f, text);
  return f;
}

describe('configuration', () => {
  it('starts from documented defaults with no file and no environment', () => {
    const c = loadConfig({ env: {} });
    assert.equal(c.listen.port, 27016);
    assert.deepEqual(c.upstream.servers, ['127.0.0.1:27017']);
    assert.equal(c.upstream.maxPoolSize, 16);
    assert.equal(c.client.maxMessageSizeBytes, 48_000_000);
  });

  it('reads a YAML file and lets environment variables override it', () => {
    const file = tempFile('m.yaml', 'upstream:\n  servers: ["db1:27017"]\n  maxPoolSize: 4\nlisten:\n  port: 1234\n');
    const c = loadConfig({ file, env: { MONGOPLEX_UPSTREAM_MAX_POOL_SIZE: '32', MONGOPLEX_UPSTREAM_SERVERS: 'a:1,b:2', MONGOPLEX_CLIENT_COMPRESSORS: 'zstd' } });
    assert.equal(c.upstream.maxPoolSize, 32);
    assert.deepEqual(c.upstream.servers, ['a:1', 'b:2']);
    assert.deepEqual(c.client.compressors, ['zstd']);
    assert.equal(c.listen.port, 1234);
  });

  it('refuses an invalid setting, naming it and where it came from', () => {
    assert.throws(() => loadConfig({ env: { MONGOPLEX_UPSTREAM_MAX_POOL_SIZE: '0' } }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /upstream\.maxPoolSize \(from MONGOPLEX_UPSTREAM_MAX_POOL_SIZE\)/);
      return true;
    });
    const file = tempFile('bad.yaml', 'upstream:\n  maxPoolSise: 3\n');
    assert.throws(() => loadConfig({ file, env: {} }), /upstream.*maxPoolSise/);
    assert.throws(() => loadConfig({ env: { MONGOPLEX_UPSTREAM_SERVERS: 'no-port' } }), /upstream\.servers\.0.*expected host:port/);
    assert.throws(() => loadConfig({ env: { MONGOPLEX_CLIENT_COMPRESSORS: 'lz4' } }), /client\.compressors\.0/);
    assert.throws(() => loadConfig({ env: { MONGOPLEX_UPSTREAM_MIN_POOL_SIZE: '50' } }), /minPoolSize: must not exceed/);
    assert.throws(() => loadConfig({ env: { MONGOPLEX_CAPTURE_ENABLED: 'true' } }), /capture\.enabled: needs capture\.dir/);
    assert.throws(() => loadConfig({ env: { MONGOPLEX_ADMIN_TOKEN: 'short' } }), /admin\.token \(from MONGOPLEX_ADMIN_TOKEN\): use at least 16 characters/);
    assert.deepEqual(loadConfig({ env: { MONGOPLEX_CAPTURE_NAMESPACES: 'shop.*,app.users' } }).capture.namespaces, ['shop.*', 'app.users']);
  });

  it('refuses an unknown MONGOPLEX_ environment variable (a typo must not be silently ignored)', () => {
    assert.throws(() => loadConfig({ env: { MONGOPLEX_UPSTREAM_MAX_POOLSIZE: '3' } }), /unknown environment setting MONGOPLEX_UPSTREAM_MAX_POOLSIZE/);
  });

  it('names one environment variable for every setting', () => {
    const vars = environmentVariables();
    assert.deepEqual(vars.get('MONGOPLEX_UPSTREAM_WAIT_QUEUE_TIMEOUT_MS'), ['upstream', 'waitQueueTimeoutMs']);
    assert.deepEqual(vars.get('MONGOPLEX_ADMIN_PORT'), ['admin', 'port']);
  });

  it('the mongoplex command refuses to start on an invalid setting, with a message naming it', () => {
    const r = spawnSync(process.execPath, [MAIN], { env: { ...process.env, MONGOPLEX_LISTEN_PORT: '99999' }, encoding: 'utf8' });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /invalid configuration:\n\s+listen\.port \(from MONGOPLEX_LISTEN_PORT\)/);
  });
});

describe('documentation', () => {
  it('docs/configuration.md is exactly what the schema generates (npm run docs), every setting described there once', () => {
    const page = readFileSync(path.resolve(__dirname, '..', '..', 'docs', 'configuration.md'), 'utf8');
    assert.equal(page, configurationPage(), 'docs/configuration.md is stale: run npm run docs');
    const documented = settingsReference().map((r) => r.env).sort();
    assert.deepEqual(documented, [...environmentVariables().keys()].sort(), 'every setting and only the settings');
  });

  it('mongoplex --print-env lists every variable with its setting and default, from the same source', () => {
    const out = execFileSync(process.execPath, [path.resolve(__dirname, '..', 'filter', 'main.js'), '--print-env'], { encoding: 'utf8' });
    const lines = out.trim().split('\n');
    assert.equal(lines.length, settingsReference().length);
    assert.ok(lines.includes('MONGOPLEX_CLIENT_MAX_UNREAD_REPLY_BYTES\tclient.maxUnreadReplyBytes\t67108864'), out);
  });
});
