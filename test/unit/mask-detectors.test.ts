/**
 * The fast paths of partial masking give exactly what the detectors give. `detectKind` tests whole values with
 * anchored patterns; the definition it must agree with is "the detector's first match in the value is all of it",
 * written here with the scanning DETECTORS. `partialMaskAscii` works on bytes and takes shortcuts; it must agree with
 * the partial masker's `maskValue` for every ASCII value (and decline anything else).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createMasker, detectKind, DETECTORS, partialMaskAscii, type DetectedKind } from '../../src/gateway/masking/mask.js';

function referenceKind(value: string): DetectedKind | 'generic' {
  for (const detector of DETECTORS) {
    if (!detector.mayMatch(value)) continue;
    detector.pattern.lastIndex = 0;
    const match = detector.pattern.exec(value);
    if (match && match[0] === value && (!detector.confirm || detector.confirm(match[0]))) return detector.kind;
  }
  return 'generic';
}

const digit = fc.integer({ min: 0, max: 9 }).map(String);
const digits = (min: number, max: number): fc.Arbitrary<string> => fc.array(digit, { minLength: min, maxLength: max }).map((d) => d.join(''));

function luhnComplete(body: string): string {
  for (let check = 0; check <= 9; check += 1) {
    const candidate = body + String(check);
    let sum = 0;
    for (let i = 0; i < candidate.length; i += 1) {
      let d = Number(candidate[candidate.length - 1 - i]);
      if (i % 2 === 1) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
      sum += d;
    }
    if (sum % 10 === 0) return candidate;
  }
  throw new Error('unreachable');
}

function ibanComplete(country: string, account: string): string {
  const numeric = (account + country + '00').replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
  let remainder = 0;
  for (const d of numeric) remainder = (remainder * 10 + Number(d)) % 97;
  return `${country}${String(98 - remainder).padStart(2, '0')}${account}`;
}

const upper = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZ');
const separated = (value: string, separators: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.array(separators, { minLength: value.length, maxLength: value.length })
    .map((seps) => [...value].map((char, i) => (i > 0 ? seps[i]! : '') + char).join(''));

/** Values near the detectors' edges: real ones, with separators moved, and characters added, dropped or swapped. */
const candidate: fc.Arbitrary<string> = fc.oneof(
  fc.emailAddress(),
  digits(12, 18).map(luhnComplete).chain((card) => fc.oneof(fc.constant(card), separated(card, fc.constantFrom('', '', ' ', '-')))),
  fc.tuple(upper, upper, fc.array(fc.oneof(digit, upper), { minLength: 11, maxLength: 30 })).map(([a, b, rest]) => ibanComplete(a + b, rest.join(''))),
  fc.tuple(digits(3, 3), digits(2, 2), digits(4, 4)).map(([a, b, c]) => `${a}-${b}-${c}`),
  fc.tuple(fc.option(digits(1, 3)), fc.constantFrom('-', '.', ' ', ''), fc.boolean(), digits(3, 3), fc.constantFrom('-', '.', ' '),
    digits(3, 3), fc.constantFrom('-', '.', ' '), digits(4, 4))
    .map(([cc, s0, paren, a, s1, b, s2, c]) => `${cc === null ? '' : `+${cc}${s0}`}${paren ? `(${a})` : a}${s1}${b}${s2}${c}`),
  fc.string({ unit: fc.constantFrom(...'0123456789 -.+()@aZ_x'), maxLength: 24 }),
  fc.string({ maxLength: 20 }),
);
const mutated: fc.Arbitrary<string> = fc.tuple(candidate, fc.string({ unit: fc.constantFrom(...'0123456789 -.@aX'), maxLength: 2 }),
  fc.string({ unit: fc.constantFrom(...'0123456789 -.@aX'), maxLength: 2 }), fc.nat(3))
  .map(([value, prefix, suffix, how]) => (how === 0 ? value : how === 1 ? prefix + value : how === 2 ? value + suffix : value.slice(1)));

describe('partial masking fast paths', () => {
  it('detectKind agrees with the scanning detectors on whole values', () => {
    fc.assert(fc.property(mutated, (value) => {
      expect(detectKind(value)).toBe(referenceKind(value));
    }), { numRuns: 20_000 });
  });

  it('generates every kind (the property above is not only about generic values)', () => {
    const kinds = new Set(fc.sample(mutated, 5_000).map(referenceKind));
    expect([...kinds].sort()).toEqual(['card', 'email', 'generic', 'iban', 'phone', 'ssn']);
  });

  it('partialMaskAscii masks ASCII bytes exactly as maskValue masks the text', () => {
    const partial = createMasker('partial', Buffer.alloc(32));
    fc.assert(fc.property(mutated, fc.nat(4), (value, padding) => {
      // The value sits inside a larger buffer, as in a DataRow.
      const bytes = Buffer.concat([Buffer.alloc(padding, 0x41), Buffer.from(value, 'utf8'), Buffer.alloc(3, 0x42)]);
      const into = { head: '', from: 0, to: 0 };
      const ascii = partialMaskAscii(bytes, padding, bytes.length - 3, into);
      expect(ascii).toBe(/^[\x00-\x7f]*$/.test(value));
      if (ascii) expect(into.head + bytes.toString('latin1', into.from, into.to)).toBe(partial.maskValue(value, 25));
    }), { numRuns: 20_000 });
  });
});
