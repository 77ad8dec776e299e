/**
 * `dbgate connect` as a person sees it: the real executable in a real terminal (tmux), psql running statements
 * through the URI read off the screen, and the live view counting what the gateway decided.
 *
 * DBGATE_UPDATE_DOCS=1 also writes the captured screen to docs/connect-live-view.txt.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runProcess, type Finished } from '../support/processes.js';
import { eventually, mintCredential, sharedStack } from '../support/stack.js';


/** A tmux server of this test's own (its socket in the test's temporary directory): no other tmux is touched. */
let socket: string;
const session = 'connect';

function tmux(...args: string[]): Promise<Finished> {
  const env = { ...process.env };
  delete env['TMUX']; // inside a tmux, new-session would refuse to nest
  // The terminal in the pane is a person's terminal, not a CI log: in CI (CI=true) the CLI would fall back to
  // plain lines, as it should there.
  delete env['CI'];
  delete env['CONTINUOUS_INTEGRATION'];
  return runProcess('tmux', ['-S', socket, ...args], env);
}

/**
 * The visible screen, wrapped lines joined, trailing blanks trimmed. `scrollback` lines above it are included too
 * (tmux scrolls a dead pane up one line to print "Pane is dead" under it).
 */
async function screen(scrollback = 0): Promise<string> {
  const captured = await tmux('capture-pane', '-p', '-J', '-t', session, '-S', String(-scrollback));
  return captured.stdout.split('\n').map((line) => line.trimEnd()).join('\n').trimEnd();
}

/** Polls the screen until `pattern` shows; returns the screen it showed on. */
async function screenShowing(pattern: RegExp, timeoutMs = 20_000, scrollback = 0): Promise<string> {
  let last = '';
  const shown = await eventually(async () => pattern.test((last = await screen(scrollback))), timeoutMs, 100);
  if (!shown) throw new Error(`the screen never showed ${pattern}; it shows:\n${last}`);
  return last;
}

describe('dbgate connect live view (in a terminal)', () => {
  let workDir: string;
  let uri: string;

  beforeAll(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'dbgate-live-view-'));
    socket = join(workDir, 'tmux.sock');
    // remain-on-exit keeps the pane after dbgate exits, so its last frame can be read.
    const config = join(workDir, 'tmux.conf');
    await writeFile(config, 'set-option -g remain-on-exit on\n');
    const credential = await mintCredential('alice', { groups: ['engineering'] });
    const started = await tmux(
      '-f', config, 'new-session', '-d', '-s', session, '-x', '120', '-y', '30', '-c', process.cwd(),
      '-e', `DBGATE_GATEWAY=${sharedStack().gateway.apiUrl}`,
      '-e', `DBGATE_CREDENTIAL=${credential}`,
      '-e', `DBGATE_CONFIG_DIR=${join(workDir, 'config')}`,
      // The shell prints dbgate's exit status (tmux 3.3 does not always record it for a dead pane). Its no-op trap
      // keeps Ctrl-C from ending the shell itself; dbgate gets the default disposition back and its own handler.
      `trap : INT; '${process.execPath}' bin/dbgate connect prod-orders; echo "dbgate exited with status $?"`,
    );
    expect(started.stderr).toBe('');
    const ready = await screenShowing(/postgres:\/\/alice:\S+\?sslmode=disable/);
    uri = /postgres:\/\/alice:\S+\?sslmode=disable/.exec(ready)![0];
  });

  afterAll(async () => {
    if (socket) await tmux('kill-server');
    await rm(workDir, { recursive: true, force: true });
  });

  it('shows the target, the local URI, the identity and how long its credential is valid', async () => {
    const shown = await screen();
    expect(shown).toContain('dbgate connect prod-orders');
    expect(uri).toMatch(/^postgres:\/\/alice:[A-Za-z0-9_-]{32}@127\.0\.0\.1:\d+\/prod-orders\?sslmode=disable$/);
    expect(shown).toMatch(/identity +alice \(engineering\) · credential valid for (29|30)m/);
    expect(shown).toMatch(/connections +0 open · 0 since start/);
    expect(shown).toMatch(/statements +allowed 0 · masked — · denied 0 · held 0$/m);
    expect(shown).toMatch(/approvals +no pending approvals/);
    expect(shown).toContain('masked —: the tunnel counts, masked results as allowed, until the gateway answers with its audit trail.');
    expect(shown).toContain('Ctrl-C to close');
  });

  it('counts the statements psql runs through it by what the gateway decided, masked ones from its audit trail', async () => {
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('PG')));
    const psql = spawn('psql', ['-X', '-v', 'ON_ERROR_STOP=0', uri], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    psql.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    psql.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => psql.once('exit', resolve));
    // One session, kept open while the screen is read: two selects run as they are (the second a result of a few MB,
    // which the observing relay must pass intact; alice's statements are all decided `mask`, but these show nothing
    // masked), a third has its emails masked, an unbounded DELETE is denied, DROP is held and a missing table fails.
    // The hashes are spelled in letters: the content detectors mask digit runs that look like phone numbers, which
    // plain md5 hashes have (158 of these 100,000), and that statement would count as masked.
    psql.stdin.write([
      'select 1;',
      "select g, translate(md5(g::text), '0123456789', 'ghijklmnop') from generate_series(1, 100000) g;",
      'select email from customers order by id limit 3;',
      'delete from orders;',
      'drop table customers;',
      'select * from no_such_table;',
      '',
    ].join('\n'));

    // The gateway's counts: the view asks every 2 s while statements run, and its audit trail lags a little.
    const during = await screenShowing(/statements +allowed 2 · masked 1 · denied 1 · held 1 · failed 1$/m);
    expect(during).toMatch(/connections +1 open · 1 since start/);
    expect(during).toContain('Counted by the gateway from its audit trail, a moment behind the tunnel.');
    if (process.env['DBGATE_UPDATE_DOCS'] === '1') {
      await mkdir('docs', { recursive: true });
      await writeFile('docs/connect-live-view.txt', `${during}\n`);
    }

    psql.stdin.end();
    expect(await exited).toBe(0);
    expect(stdout).toContain(' 100000 | hkeeiieabaipnpkkcpmafdbelbhmcmlb\n(100000 rows)');
    const emails = stdout.split('\n').filter((line) => /^\s*\S+@\S+\s*$/.test(line));
    expect(emails).toHaveLength(3);
    for (const email of emails) expect(email).toContain('*');
    expect(stderr).toMatch(/ERROR: {2}dbgate: DELETE on orders denied/);
    expect(stderr).toMatch(/ERROR: {2}dbgate: DROP TABLE on customers is held for approval/);
    expect(stderr).toMatch(/ERROR: {2}relation "no_such_table" does not exist/);
    await screenShowing(/connections +0 open · 1 since start/);
  });

  it('closes the tunnel and exits 0 on Ctrl-C, leaving the final frame', async () => {
    await tmux('send-keys', '-t', session, 'C-c');
    const last = await screenShowing(/dbgate exited with status \d+/, 10_000, 1);
    expect(last).toContain('dbgate exited with status 0');
    expect(last).toContain('dbgate connect prod-orders  (tunnel closed)');
    expect(last).toMatch(/statements +allowed 2 · masked 1 · denied 1 · held 1 · failed 1$/m);
  });
});
