import { runAuthBenchmark } from './auth';
import { runDriverSuite } from './driver-suite';
import { runFuzz } from './fuzz';
import { runLargeInput } from './large-input';
import { runOperationsBenchmark } from './operations';
import { runPoolBenchmark } from './pool';
import { runSpeedBenchmark } from './speed';
import { runTrafficBenchmark } from './traffic';
import { runUnreadReplies } from './unread';

const BENCHMARKS: Record<string, (args: string[]) => Promise<void>> = {
  pool: runPoolBenchmark,
  fuzz: runFuzz,
  unread: runUnreadReplies,
  'large-input': runLargeInput,
  traffic: runTrafficBenchmark,
  operations: runOperationsBenchmark,
  auth: runAuthBenchmark,
  speed: runSpeedBenchmark,
  'driver-suite': runDriverSuite,
};

async function main(): Promise<void> {
  const [name, ...args] = process.argv.slice(2);
  const bench = name ? BENCHMARKS[name] : undefined;
  if (!bench) {
    console.error(`usage: npm run bench -- <${Object.keys(BENCHMARKS).join('|')}> [options]`);
    process.exit(2);
  }
  await bench(args);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
