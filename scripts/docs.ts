import { writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { configurationPage } from '../filter/config/reference';

/** `npm run docs`: regenerates docs/configuration.md from the configuration schema. */
const target = path.resolve(__dirname, '..', '..', 'docs', 'configuration.md');
writeFileSync(target, configurationPage());
console.log(`wrote ${path.relative(process.cwd(), target)}`);
