/**
 * Shell completions: the checked-in scripts in completions/ are exactly what `dbgate completion <shell>` prints now
 * (regenerate with the npm script `completions` when this fails), and the scripts complete in the real shells —
 * bash always, fish and zsh where they are installed. Target names come from `dbgate __complete targets`; here a
 * stand-in `dbgate` on PATH answers it (the real one runs against a gateway in cli-targets-query.test.ts).
 */
import { execFile, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { captureContext } from '../support/capture-context.js';

const run = promisify(execFile);
const COMPLETIONS = resolve('completions');
const SCRIPTS = { bash: 'dbgate.bash', zsh: '_dbgate', fish: 'dbgate.fish' } as const;


function installed(shell: string): boolean {
  return spawnSync(shell, ['-c', 'true'], { stdio: 'ignore' }).status === 0;
}

let scratch: string;
/** PATH with a stand-in `dbgate` whose `__complete targets` lists two targets. */
let pathWithTargets: string;

beforeAll(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'dbgate-completion-'));
  const bin = join(scratch, 'bin');
  await mkdir(bin);
  await writeFile(join(bin, 'dbgate'), '#!/bin/sh\n[ "$1 $2" = "__complete targets" ] && printf "prod-orders\\nscratch\\n"\nexit 0\n');
  await chmod(join(bin, 'dbgate'), 0o755);
  pathWithTargets = `${bin}${delimiter}${process.env['PATH'] ?? ''}`;
});

afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('dbgate completion <shell>', () => {
  for (const [shell, file] of Object.entries(SCRIPTS)) {
    it(`completions/${file} is what dbgate completion ${shell} prints now`, async () => {
      const context = captureContext();
      expect(await main(['completion', shell], context)).toBe(0);
      const checkedIn = await readFile(join(COMPLETIONS, file), 'utf8');
      expect(checkedIn, `completions/${file} is stale: run npm run completions`).toBe(context.out());
    });
  }

  it('is generated from the tree: every command, alias and option appears', async () => {
    const context = captureContext();
    await main(['completion', 'bash'], context);
    const script = context.out();
    for (const word of ['login', 'status|whoami', 'connect', 'targets', 'query', '--gateway-ca', '--no-browser', '--csv']) {
      expect(script).toContain(word);
    }
    expect(script).not.toContain('__complete)');
  });

  it('refuses a shell it does not know (usage, exit 2)', async () => {
    const context = captureContext();
    expect(await main(['completion', 'powershell'], context)).toBe(2);
    expect(context.err()).toContain('Allowed choices are bash, zsh, fish');
  });
});

describe('dbgate __complete targets', () => {
  it('prints nothing and exits 0 when not logged in', async () => {
    const context = captureContext({ DBGATE_CONFIG_DIR: join(scratch, 'no-login') });
    expect(await main(['__complete', 'targets'], context)).toBe(0);
    expect(context.out()).toBe('');
    expect(context.err()).toBe('');
  });

  it('prints nothing and exits 0 when the gateway cannot be reached', async () => {
    const credential = `${Buffer.from('{}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: 'alice', exp: Date.now() / 1000 + 600 })).toString('base64url')}.c2ln`;
    const context = captureContext({ DBGATE_CREDENTIAL: credential, DBGATE_GATEWAY: 'http://127.0.0.1:9', DBGATE_CONFIG_DIR: join(scratch, 'no-login') });
    expect(await main(['__complete', 'targets'], context)).toBe(0);
    expect(context.out()).toBe('');
    expect(context.err()).toBe('');
  });
});

/** COMPREPLY after `_dbgate` for the words typed so far (the last one is being completed). */
async function bashComplete(words: string[]): Promise<string[]> {
  const script = [
    `source ${JSON.stringify(join(COMPLETIONS, SCRIPTS.bash))}`,
    `COMP_WORDS=(${words.map((word) => `'${word}'`).join(' ')})`,
    `COMP_CWORD=${words.length - 1}`,
    '_dbgate',
    'printf "%s\\n" "${COMPREPLY[@]}"',
  ].join('\n');
  const { stdout } = await run('bash', ['--norc', '--noprofile', '-c', script], { env: { ...process.env, PATH: pathWithTargets } });
  return stdout.split('\n').filter((line) => line !== '');
}

describe('bash (compgen)', () => {
  it('completes a command from its prefix', async () => {
    expect(await bashComplete(['dbgate', 'con'])).toEqual(['connect']);
    expect(await bashComplete(['dbgate', 'who'])).toEqual(['whoami']);
  });

  it("completes the command's options after --", async () => {
    expect(await bashComplete(['dbgate', 'connect', '--'])).toEqual(['--port', '--json', '--gateway', '--profile', '--gateway-ca', '--help']);
    expect(await bashComplete(['dbgate', 'query', '--c'])).toEqual(['--csv']);
  });

  it('resolves aliases to their command', async () => {
    expect(await bashComplete(['dbgate', 'whoami', '--j'])).toEqual(['--json']);
  });

  it('completes target names from dbgate __complete targets, only where a target goes', async () => {
    expect(await bashComplete(['dbgate', 'connect', ''])).toEqual(['prod-orders', 'scratch']);
    expect(await bashComplete(['dbgate', 'query', '--json', 'pr'])).toEqual(['prod-orders']);
    // Option values are skipped when counting arguments: the target is still the first argument here.
    expect(await bashComplete(['dbgate', 'connect', '--port', '15432', 's'])).toEqual(['scratch']);
    expect(await bashComplete(['dbgate', 'connect', '--port', ''])).toEqual([]);
    expect(await bashComplete(['dbgate', 'query', 'prod-orders', ''])).toEqual([]);
  });

  it("completes an argument's choices", async () => {
    expect(await bashComplete(['dbgate', 'completion', ''])).toEqual(['bash', 'zsh', 'fish']);
  });
});

/** A shell the completion tests need: missing means the machine is set up wrong (CI installs it), never a skip. */
function requireShell(shell: string): void {
  if (!installed(shell)) throw new Error(`the completion tests need ${shell} (Debian package "${shell}"; .ci/run installs it)`);
}

describe('fish (complete -C)', () => {
  beforeAll(() => requireShell('fish'));

  async function fishComplete(line: string): Promise<string[]> {
    const { stdout } = await run('fish', ['--no-config', '-c', `source ${join(COMPLETIONS, SCRIPTS.fish)}; complete -C '${line}'`], {
      env: { ...process.env, PATH: pathWithTargets },
    });
    return stdout.split('\n').filter((entry) => entry !== '').map((entry) => entry.split('\t')[0]!);
  }

  it('completes commands, options and target names', async () => {
    expect(await fishComplete('dbgate con')).toEqual(['connect']);
    expect(await fishComplete('dbgate connect --g')).toEqual(['--gateway', '--gateway-ca']);
    expect(await fishComplete('dbgate connect ')).toEqual(['prod-orders', 'scratch']);
    expect(await fishComplete('dbgate query prod-orders ')).toEqual([]);
    expect(await fishComplete('dbgate completion ')).toEqual(['bash', 'fish', 'zsh']);
  });
});

describe('zsh', () => {
  beforeAll(() => requireShell('zsh'));

  it('the script parses (zsh -n)', async () => {
    // execFile rejects on a non-zero exit; a clean parse also prints nothing.
    const { stderr } = await run('zsh', ['-n', join(COMPLETIONS, SCRIPTS.zsh)]);
    expect(stderr).toBe('');
  });
});
