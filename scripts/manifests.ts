import { mkdirSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { kubernetesManifests } from '../filter/deploy/kubernetes';

/** `npm run manifests`: regenerates deploy/kubernetes/ from filter/deploy/kubernetes.ts. */
const dir = path.resolve(__dirname, '..', '..', 'deploy', 'kubernetes');
for (const [file, text] of kubernetesManifests()) {
  const target = path.join(dir, file);
  mkdirSync(path.dirname(target), { recursive: true });
  writeFileSync(target, text);
  console.log(`wrote ${path.relative(process.cwd(), target)}`);
}
