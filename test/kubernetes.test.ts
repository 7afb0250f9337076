import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { CONTROL_ENDPOINTS, GET_ENDPOINTS } from '../filter/admin/http';
import { loadConfig, type Config } from '../filter/config';
import { settingsReference } from '../filter/config/reference';
import { ISTIO_PROCESSOR_CLUSTER, kubernetesManifests } from '../filter/deploy/kubernetes';
import { envoyBinary } from '../scripts/envoy';

/**
 * deploy/kubernetes/, checked without a cluster (none runs here): the files are what the
 * generator writes; `kubectl kustomize` (built by scripts/install-kubectl.sh from k8s.io/kubectl)
 * renders each shape; every rendered object validates against the Kubernetes and Istio API
 * schemas (the kubernetes-models packages; like kubectl's default validation, they do not reject
 * unknown fields); Envoy accepts the Envoy configuration inside; and the probes, hooks, socket,
 * ports and timings agree with the mongoplex configuration shipped beside them.
 */
const ROOT = path.resolve(__dirname, '..', '..');
const DIR = path.join(ROOT, 'deploy', 'kubernetes');
const SHAPES = ['sidecar', 'tier', 'istio'] as const;

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function kubectl(): string {
  return execFileSync('bash', [path.join(ROOT, 'scripts', 'install-kubectl.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim();
}

/** The kubernetes-models packages are ES modules only; this test file is CommonJS. */
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<Record<string, new (data: Obj) => { validate(): void }>>;

/** The schema module of each apiVersion/kind the manifests use. */
const MODELS: Record<string, string> = {
  'v1/Namespace': 'kubernetes-models/v1/Namespace',
  'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap',
  'v1/Service': 'kubernetes-models/v1/Service',
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
  'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
  'networking.istio.io/v1alpha3/EnvoyFilter': '@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter',
  'networking.istio.io/v1/Sidecar': '@kubernetes-models/istio/networking.istio.io/v1/Sidecar',
  'security.istio.io/v1/PeerAuthentication': '@kubernetes-models/istio/security.istio.io/v1/PeerAuthentication',
};

/** Validates one object against its API schema; the schema's complaint, or undefined. */
async function schemaError(o: Obj): Promise<string | undefined> {
  const key = `${o.apiVersion}/${o.kind}`;
  const module = MODELS[key];
  if (!module) return `no schema known for ${key}`;
  const Model = (await importEsm(module))[o.kind as string]!;
  try {
    new Model(o).validate();
    return undefined;
  } catch (err) {
    return `${key} ${o.metadata?.name}: ${(err as Error).message}`;
  }
}

function validateEnvoy(bootstrap: unknown): string | undefined {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'mongoplex-k8s-envoy-')), 'envoy.yaml');
  writeFileSync(file, stringify(bootstrap));
  const r = spawnSync(envoyBinary(), ['--mode', 'validate', '-c', file, '--log-level', 'error'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `${r.stdout}\n${r.stderr}`.trim();
}

function filesUnder(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((f) => (statSync(path.join(dir, f)).isDirectory() ? filesUnder(path.join(dir, f), `${prefix}${f}/`) : [`${prefix}${f}`]));
}

const byKind = (objs: Obj[], kind: string): Obj[] => objs.filter((o) => o.kind === kind);
const one = (objs: Obj[], kind: string): Obj => {
  const found = byKind(objs, kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0]!;
};

/** A pod's mongoplex container (a native sidecar in the sidecar shape) and what it runs with. */
function mongoplexOf(rendered: Obj[], deploymentName: string): { pod: Obj; container: Obj; config: Config; configText: string } {
  const deployment = byKind(rendered, 'Deployment').find((d) => d.metadata.name === deploymentName)!;
  const pod = deployment.spec.template.spec;
  const container = [...(pod.initContainers ?? []), ...pod.containers].find((c: Obj) => c.name === 'mongoplex');
  assert.ok(container, 'a mongoplex container');
  // --config FILE: a key of the ConfigMap mounted at FILE's directory.
  const configFile: string = container.args[container.args.indexOf('--config') + 1];
  const mount = container.volumeMounts.find((m: Obj) => m.mountPath === path.dirname(configFile));
  assert.ok(mount, `the --config directory ${path.dirname(configFile)} is a mount`);
  const volume = pod.volumes.find((v: Obj) => v.name === mount.name);
  const configMap = byKind(rendered, 'ConfigMap').find((c) => c.metadata.name === volume.configMap.name);
  assert.ok(configMap, `the ConfigMap ${volume.configMap.name} the config volume names is rendered`);
  const configText: string = configMap.data[path.basename(configFile)];
  assert.ok(configText, `${path.basename(configFile)} is in the ConfigMap`);
  // Loaded as mongoplex loads it, with the environment the container gets from the Secret.
  const env = Object.fromEntries(container.env.map((e: Obj) => [e.name, e.valueFrom?.secretKeyRef ? 'from-the-secret-0123456789' : e.value]));
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'mongoplex-k8s-config-')), 'mongoplex.yaml');
  writeFileSync(file, configText);
  return { pod, container, config: loadConfig({ file, env }), configText };
}

describe('Kubernetes and Istio manifests (deploy/kubernetes/, checked offline: no cluster runs here)', () => {
  const rendered = new Map<string, Obj[]>();

  before(() => {
    const bin = kubectl();
    for (const shape of SHAPES) {
      const out = execFileSync(bin, ['kustomize', path.join(DIR, shape)], { encoding: 'utf8' });
      rendered.set(shape, parseAllDocuments(out).map((d) => d.toJS() as Obj));
    }
  });

  it('are exactly what filter/deploy/kubernetes.ts generates (npm run manifests), nothing more', () => {
    const generated = kubernetesManifests();
    assert.deepEqual(filesUnder(DIR).sort(), [...generated.keys()].sort(), 'deploy/kubernetes/ has the generated files only');
    for (const [file, text] of generated) assert.equal(readFileSync(path.join(DIR, file), 'utf8'), text, `deploy/kubernetes/${file} is stale: run npm run manifests`);
  });

  it('kubectl kustomize renders every shape, and every object it renders validates against the Kubernetes and Istio schemas', async () => {
    assert.deepEqual(rendered.get('sidecar')!.map((o) => o.kind).sort(), ['ConfigMap', 'ConfigMap', 'Deployment']);
    assert.deepEqual(rendered.get('tier')!.map((o) => o.kind).sort(), ['ConfigMap', 'Deployment', 'Namespace', 'PodDisruptionBudget', 'Service']);
    assert.deepEqual(rendered.get('istio')!.map((o) => o.kind).sort(), ['ConfigMap', 'Deployment', 'EnvoyFilter', 'Namespace', 'PeerAuthentication', 'PodDisruptionBudget', 'Service', 'Sidecar']);
    const errors = [];
    for (const objs of rendered.values()) for (const o of objs) errors.push(await schemaError(o));
    assert.deepEqual(errors.filter(Boolean), []);
    // The schemas do catch mistakes: a probe without its port, an EnvoyFilter patch on no known target.
    const deployment = structuredClone(one(rendered.get('tier')!, 'Deployment'));
    delete deployment.spec.template.spec.containers[0].readinessProbe.httpGet.port;
    assert.match((await schemaError(deployment)) ?? '', /httpGet must have required property 'port'|required property port/);
    const filter = structuredClone(one(rendered.get('istio')!, 'EnvoyFilter'));
    filter.spec.configPatches[0].applyTo = 'NETWORK_FILTR';
    assert.match((await schemaError(filter)) ?? '', /applyTo must be equal to one of the allowed values/);
  });

  it("Envoy 1.40 accepts the sidecar's bootstrap, and the EnvoyFilter's patches spliced into an Istio-shaped outbound listener", () => {
    const envoyConfigMap = byKind(rendered.get('sidecar')!, 'ConfigMap').find((c) => c.data['envoy.yaml'])!;
    assert.equal(validateEnvoy(parse(envoyConfigMap.data['envoy.yaml'])), undefined);
    // What Istio gives a pod's sidecar for a TCP service port: an outbound listener whose filter
    // chain ends in tcp_proxy, and an HTTP/2 cluster for a gRPC (appProtocol grpc) service port.
    const filter = one(rendered.get('istio')!, 'EnvoyFilter');
    const filters: Obj[] = [{ name: 'envoy.filters.network.tcp_proxy', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', stat_prefix: 'outbound|27017||mongodb', cluster: 'outbound|27017||mongodb' } }];
    for (const p of filter.spec.configPatches) {
      assert.equal(p.applyTo, 'NETWORK_FILTER');
      assert.equal(p.match.context, 'SIDECAR_OUTBOUND');
      const at = filters.findIndex((f) => f.name === p.match.listener.filterChain.filter.name);
      assert.ok(at >= 0, `the patch's target ${p.match.listener.filterChain.filter.name} is in the chain`);
      if (p.patch.operation === 'INSERT_BEFORE') filters.splice(at, 0, p.patch.value);
      else if (p.patch.operation === 'REPLACE') filters.splice(at, 1, p.patch.value);
      else assert.fail(`unexpected patch operation ${p.patch.operation}`);
    }
    assert.deepEqual(filters.map((f) => f.name), ['envoy.filters.network.ext_proc', 'envoy.filters.network.echo'], 'no tcp_proxy is left: no MongoDB connection per client');
    const cluster = (name: string, port: number, http2: boolean): Obj => ({
      name, type: 'STATIC', connect_timeout: '5s',
      load_assignment: { cluster_name: name, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: '127.0.0.1', port_value: port } } } }] }] },
      ...(http2 ? { typed_extension_protocol_options: { 'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': { '@type': 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions', explicit_http_config: { http2_protocol_options: {} } } } } : {}),
    });
    const processor = filters[0]!.typed_config.grpc_service.envoy_grpc.cluster_name;
    assert.equal(validateEnvoy({
      admin: { address: { socket_address: { address: '127.0.0.1', port_value: 15000 } } },
      static_resources: {
        listeners: [{ name: '0.0.0.0_27017', address: { socket_address: { address: '0.0.0.0', port_value: 27017 } }, filter_chains: [{ filters }] }],
        clusters: [cluster('outbound|27017||mongodb', 27017, false), cluster(processor, 50051, true)],
      },
    }), undefined);
  });

  it("sidecar: Envoy's ext_proc socket is mongoplex's listen.grpc, in a volume the two containers share, and both outlive the application", () => {
    const objs = rendered.get('sidecar')!;
    const { pod, container, config } = mongoplexOf(objs, 'my-app');
    const envoyContainer = pod.initContainers.find((c: Obj) => c.name === 'envoy');
    for (const c of [container, envoyContainer]) assert.equal(c.restartPolicy, 'Always', `${c.name} is a native sidecar: stopped after the application`);
    const configFile = envoyContainer.command[envoyContainer.command.indexOf('-c') + 1];
    const envoyMount = envoyContainer.volumeMounts.find((m: Obj) => m.mountPath === path.dirname(configFile));
    const envoyConfigMapName = pod.volumes.find((v: Obj) => v.name === envoyMount.name).configMap.name;
    const bootstrap = parse(byKind(objs, 'ConfigMap').find((c) => c.metadata.name === envoyConfigMapName)!.data[path.basename(configFile)]);
    const socketPath = bootstrap.static_resources.clusters.find((c: Obj) => c.name === 'mongoplex_ext_proc').load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.pipe.path;
    assert.equal(config.listen.grpc, `unix:${socketPath}`);
    const shared = (c: Obj): Obj | undefined => c.volumeMounts.find((m: Obj) => socketPath.startsWith(`${m.mountPath}/`));
    assert.ok(shared(container) && shared(envoyContainer), 'both mount the socket directory');
    assert.equal(shared(container)!.name, shared(envoyContainer)!.name, 'the same volume');
    assert.ok(pod.volumes.find((v: Obj) => v.name === shared(container)!.name).emptyDir, 'an emptyDir: the socket never leaves the pod');
    const app = pod.containers[0];
    const listener = bootstrap.static_resources.listeners[0].address.socket_address;
    assert.equal(app.env.find((e: Obj) => e.name === 'MONGODB_URI').value, `mongodb://${listener.address}:${listener.port_value}/`, "the application's connection string is Envoy's listener");
    assert.equal(config.listen.port, null, 'no TCP ingress beside Envoy');
  });

  it('tier and istio: the Service reaches the TCP ingress, the selectors find the pods, Istio hands the gRPC port to mongoplex on loopback', () => {
    for (const shape of ['tier', 'istio'] as const) {
      const objs = rendered.get(shape)!;
      const { pod, container, config } = mongoplexOf(objs, 'mongoplex');
      const labels = one(objs, 'Deployment').spec.template.metadata.labels;
      const service = one(objs, 'Service');
      for (const selector of [service.spec.selector, one(objs, 'PodDisruptionBudget').spec.selector.matchLabels, one(objs, 'Deployment').spec.selector.matchLabels]) {
        for (const [k, v] of Object.entries(selector)) assert.equal(labels[k], v, `${shape}: selector ${k}=${v} matches the pods`);
      }
      const mongo = service.spec.ports.find((p: Obj) => p.name === 'mongodb');
      assert.equal(container.ports.find((p: Obj) => p.name === mongo.targetPort).containerPort, config.listen.port, `${shape}: the Service's port is listen.port`);
      assert.equal(config.listen.host, '0.0.0.0', `${shape}: the TCP ingress listens on the pod's address`);
      assert.ok(pod.volumes.every((v: Obj) => !v.hostPath), 'no host paths');
    }
    const objs = rendered.get('istio')!;
    const { config } = mongoplexOf(objs, 'mongoplex');
    const grpc = one(objs, 'Service').spec.ports.find((p: Obj) => p.appProtocol === 'grpc');
    assert.ok(grpc, 'the gRPC port is declared appProtocol grpc (Istio makes its cluster HTTP/2)');
    const ns = one(objs, 'Service').metadata.namespace;
    assert.equal(ISTIO_PROCESSOR_CLUSTER, `outbound|${grpc.port}||${one(objs, 'Service').metadata.name}.${ns}.svc.cluster.local`);
    const filter = one(objs, 'EnvoyFilter');
    assert.equal(filter.metadata.namespace, 'istio-system', 'in the root namespace: it applies to labelled pods in every namespace');
    assert.ok(Object.keys(filter.spec.workloadSelector.labels).length > 0, 'only labelled pods get it (never the tier itself: it would loop)');
    for (const p of filter.spec.configPatches.filter((x: Obj) => x.patch.operation === 'INSERT_BEFORE')) {
      assert.equal(p.patch.value.typed_config.grpc_service.envoy_grpc.cluster_name, ISTIO_PROCESSOR_CLUSTER);
    }
    const ingress = one(objs, 'Sidecar').spec.ingress.find((i: Obj) => i.port.number === grpc.port);
    assert.equal(ingress.defaultEndpoint, config.listen.grpc, "Istio's inbound listener hands the gRPC port to listen.grpc");
    assert.match(String(config.listen.grpc), /^127\.0\.0\.1:/, 'mongoplex itself listens on loopback (mTLS is Istio\'s)');
    assert.equal(one(objs, 'PeerAuthentication').spec.mtls.mode, 'STRICT');
    assert.equal(one(objs, 'PeerAuthentication').metadata.namespace, ns);
  });

  it("every shape: probes and the preStop hook use mongoplex's admin port and real endpoints, the grace period outlasts the drain, secrets come from the Secret", () => {
    const env = new Map(settingsReference().map((r) => [r.env, r.setting]));
    for (const [shape, deploymentName] of [['sidecar', 'my-app'], ['tier', 'mongoplex'], ['istio', 'mongoplex']] as const) {
      const { pod, container, config, configText } = mongoplexOf(rendered.get(shape)!, deploymentName);
      const adminPort = container.ports.find((p: Obj) => p.name === 'admin').containerPort;
      assert.equal(adminPort, config.admin.port, `${shape}: the admin port is admin.port`);
      assert.notEqual(config.admin.host, '127.0.0.1', `${shape}: the kubelet probes the pod's address`);
      for (const [probe, endpoint] of [['readinessProbe', '/readyz'], ['livenessProbe', '/livez'], ['startupProbe', '/livez']] as const) {
        const p = container[probe].httpGet;
        assert.equal(p.path, endpoint, `${shape}: ${probe}`);
        assert.ok(GET_ENDPOINTS.includes(p.path));
        assert.ok(p.port === 'admin' || p.port === adminPort, `${shape}: ${probe} on the admin port`);
      }
      const hook = container.lifecycle.preStop.exec.command.join(' ');
      const drainUrl = /http:\/\/127\.0\.0\.1:(\d+)(\/\w+)/.exec(hook);
      assert.ok(drainUrl, `${shape}: the preStop hook calls the admin endpoint`);
      assert.equal(Number(drainUrl[1]), config.admin.port);
      assert.equal(drainUrl[2], '/drain');
      assert.ok(CONTROL_ENDPOINTS.includes(drainUrl[2]));
      assert.match(hook, /MONGOPLEX_ADMIN_TOKEN/, 'with the admin token from the environment');
      const graceMs = pod.terminationGracePeriodSeconds * 1000;
      assert.ok(graceMs > config.listen.drainTimeoutMs, `${shape}: grace ${graceMs} ms > drainTimeoutMs ${config.listen.drainTimeoutMs}`);
      assert.ok(config.listen.drainTimeoutMs > config.listen.drainDelayMs + config.listen.drainNoticeMs, `${shape}: the drain has room for its delay and notice`);
      // The token and the username come from the Secret through real settings; the password is a file from it.
      for (const e of container.env) {
        assert.ok(env.has(e.name), `${shape}: ${e.name} is a mongoplex setting`);
        assert.ok(e.valueFrom?.secretKeyRef, `${shape}: ${e.name} comes from a Secret`);
      }
      assert.deepEqual(container.env.map((e: Obj) => env.get(e.name)).sort(), ['admin.token', 'upstream.auth.username']);
      const passwordFile = config.upstream.auth.passwordFile!;
      const secretMount = container.volumeMounts.find((m: Obj) => passwordFile.startsWith(`${m.mountPath}/`));
      const secretVolume = pod.volumes.find((v: Obj) => v.name === secretMount.name).secret;
      assert.ok(secretVolume.items.some((i: Obj) => i.path === path.basename(passwordFile)), `${shape}: passwordFile is the Secret's item`);
      assert.doesNotMatch(configText, /token|password:/i, `${shape}: no secret in the ConfigMap`);
      // Non-root, read-only root filesystem, no privilege escalation, for every container.
      assert.equal(pod.securityContext.runAsNonRoot, true);
      for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
        assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${shape}: ${c.name} read-only root`);
        assert.equal(c.securityContext.allowPrivilegeEscalation, false);
        assert.ok(c.resources.requests, `${shape}: ${c.name} has resource requests`);
      }
    }
  });
});
