import { parseArgs } from 'node:util';
import { isScramMechanism, SCRAM_MECHANISMS, type ScramMechanism } from '../wire/scram';
import { addUser } from './users';

export const USERS_USAGE = `usage: mongoplex users add --file USERS.json --user NAME [--db admin] [--mechanisms SCRAM-SHA-256,SCRAM-SHA-1]

  Adds (or replaces) a user in the users file auth.usersFile names. The password is read from
  standard input (typed once, not echoed on a terminal; or piped); only its SCRAM secrets —
  salt, iteration count, StoredKey, ServerKey — are written, never the password. The file is
  created with mode 0600; a running mongoplex picks the change up at the next login.`;

/** Reads one line from stdin; on a terminal, without echoing it. */
async function readPassword(prompt: string): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  }
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let typed = '';
    const onData = (b: Buffer): void => {
      for (const ch of b.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          stdin.setRawMode(false);
          stdin.pause();
          stdin.off('data', onData);
          process.stderr.write('\n');
          resolve(typed);
          return;
        }
        if (ch === '\u0003') {
          stdin.setRawMode(false);
          reject(new Error('interrupted'));
          return;
        }
        if (ch === '\u007f') typed = typed.slice(0, -1);
        else typed += ch;
      }
    };
    stdin.on('data', onData);
  });
}

export async function usersCommand(argv: readonly string[]): Promise<void> {
  const [sub, ...rest] = argv;
  const fail = (message: string): never => {
    console.error(`mongoplex users: ${message}\n${USERS_USAGE}`);
    process.exit(2);
  };
  if (sub === '--help' || sub === undefined || rest.includes('--help')) {
    console.log(USERS_USAGE);
    return;
  }
  if (sub !== 'add') fail(`unknown subcommand "${sub}"`);
  let v;
  try {
    v = parseArgs({ args: [...rest], options: { file: { type: 'string' }, user: { type: 'string' }, db: { type: 'string', default: 'admin' }, mechanisms: { type: 'string' } } }).values;
  } catch (err) {
    return fail((err as Error).message);
  }
  if (!v.file) return fail('--file is required');
  if (!v.user) return fail('--user is required');
  let mechanisms: ScramMechanism[] = [...SCRAM_MECHANISMS];
  if (v.mechanisms) {
    const asked = v.mechanisms.split(',').map((m) => m.trim());
    const bad = asked.find((m) => !isScramMechanism(m));
    if (bad !== undefined) return fail(`unknown mechanism "${bad}" (known: ${SCRAM_MECHANISMS.join(', ')})`);
    mechanisms = asked as ScramMechanism[];
  }
  const password = await readPassword(`password for ${v.user}@${v.db}: `);
  if (password.length === 0) return fail('empty password');
  try {
    addUser(v.file, v.user, v.db, password, mechanisms);
  } catch (err) {
    return fail((err as Error).message);
  }
  console.error(`mongoplex users: ${v.user}@${v.db} written to ${v.file} (${mechanisms.join(', ')})`);
}
