import * as net from 'node:net';
import { parseArgs } from 'node:util';
import { FerretDB } from '../scripts/ferretdb';
import { MongoplexProcess, ONE_PROCESS } from '../scripts/mongoplex-process';
import { OpCode } from '../filter/wire/header';
import { rssMb } from './processes';

/**
 * `npm run bench -- large-input [--clients 10] [--megabytes 47] [--rounds 2]`: clients each
 * send all but the last 100 bytes of one large message (held by mongoplex, at its declared
 * size, against client.maxTotalBufferedBytes), then leave. Prints mongoplex's resident memory
 * (one process) before, while the messages are held, and 6 s after the clients left, per
 * round: what it keeps of memory that large messages used once they are gone.
 */

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

export async function runLargeInput(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { clients: { type: 'string', default: '10' }, megabytes: { type: 'string', default: '47' }, rounds: { type: 'string', default: '2' } } });
  const clients = Number(values.clients);
  const size = Number(values.megabytes) * 1_000_000;
  const db = await FerretDB.start();
  const { proxy, port } = await MongoplexProcess.pooling(db.address, 4, ONE_PROCESS);
  const pid = proxy.pid!;
  const rounds: Array<{ heldMB: number; afterMB: number }> = [];
  try {
    const beforeMB = rssMb(pid);
    for (let round = 0; round < Number(values.rounds); round++) {
      const sockets: net.Socket[] = [];
      for (let i = 0; i < clients; i++) {
        const s = await connect(port);
        s.on('error', () => undefined);
        // A header that claims `size` bytes, and all of them but the last 100.
        const m = Buffer.alloc(size);
        m.writeInt32LE(size, 0);
        m.writeInt32LE(100 + i, 4);
        m.writeInt32LE(OpCode.MSG, 12);
        s.write(m.subarray(0, size - 100));
        sockets.push(s);
      }
      await sleep(4000);
      const heldMB = rssMb(pid);
      for (const s of sockets) s.destroy();
      await sleep(6000);
      rounds.push({ heldMB, afterMB: rssMb(pid) });
    }
    console.log(JSON.stringify({ clients, messageBytes: size, mongoplexRssBeforeMB: beforeMB, rounds }, null, 2));
  } finally {
    await proxy.stop();
    await db.stop();
  }
}
