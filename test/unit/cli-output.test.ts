/**
 * What the CLI prints for people and programs: when it colours (NO_COLOR, FORCE_COLOR, a terminal), and RFC 4180 CSV.
 */
import { describe, expect, it } from 'vitest';
import { csvField, toCsv } from '../../src/cli/output/csv.js';
import { colorLevel } from '../../src/cli/output/terminal-style.js';

describe('colour', () => {
  const tty = (env: NodeJS.ProcessEnv) => colorLevel({ env, stdoutIsTTY: true });
  const pipe = (env: NodeJS.ProcessEnv) => colorLevel({ env, stdoutIsTTY: false });

  it('colours a terminal and not a pipe', () => {
    expect(tty({})).toBeGreaterThan(0);
    expect(pipe({})).toBe(0);
  });

  it('NO_COLOR with any value but the empty string switches colour off (no-color.org)', () => {
    expect(tty({ NO_COLOR: '1' })).toBe(0);
    expect(tty({ NO_COLOR: 'false' })).toBe(0);
    expect(tty({ NO_COLOR: '' })).toBeGreaterThan(0);
  });

  it('FORCE_COLOR wins over NO_COLOR and the missing terminal; 0 and false switch colour off', () => {
    expect(pipe({ FORCE_COLOR: '1' })).toBe(1);
    expect(pipe({ FORCE_COLOR: '' })).toBe(1);
    expect(pipe({ FORCE_COLOR: '3', NO_COLOR: '1' })).toBe(3);
    expect(tty({ FORCE_COLOR: '0' })).toBe(0);
    expect(tty({ FORCE_COLOR: 'false' })).toBe(0);
  });

  it('TERM=dumb gets no colour', () => {
    expect(tty({ TERM: 'dumb' })).toBe(0);
  });
});

describe('CSV (RFC 4180)', () => {
  it('quotes fields holding a comma, a quote, CR or LF, doubling the quotes', () => {
    expect(csvField('plain')).toBe('plain');
    expect(csvField('a,b')).toBe('"a,b"');
    expect(csvField('say "hi"')).toBe('"say ""hi"""');
    expect(csvField('two\nlines')).toBe('"two\nlines"');
    expect(csvField('cr\rhere')).toBe('"cr\rhere"');
  });

  it('writes NULL as an empty field and the empty string as "" (as PostgreSQL does)', () => {
    expect(csvField(null)).toBe('');
    expect(csvField('')).toBe('""');
  });

  it('ends every line, the header included, with CRLF', () => {
    expect(toCsv(['id', 'note'], [['1', null], ['2', 'x']])).toBe('id,note\r\n1,\r\n2,x\r\n');
    expect(toCsv(['id'], [])).toBe('id\r\n');
  });
});
