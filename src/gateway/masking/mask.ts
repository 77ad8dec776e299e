/**
 * Mask styles and content detectors. A masked value must stay parseable as the column's declared type, so text-like
 * types get a masked string, and any other type gets NULL (valid for every type).
 */
import { createHmac } from 'node:crypto';

export type MaskStyle = 'redact' | 'partial' | 'hash' | 'null';

const STYLE_STRICTNESS: Readonly<Record<MaskStyle, number>> = { partial: 0, hash: 1, redact: 2, null: 3 };

/** The strictest of `styles` (null > redact > hash > partial); `partial` when there are none. */
export function strictestStyle(styles: Iterable<MaskStyle>): MaskStyle {
  let strictest: MaskStyle = 'partial';
  for (const style of styles) if (STYLE_STRICTNESS[style] > STYLE_STRICTNESS[strictest]) strictest = style;
  return strictest;
}

/** Text-like type OIDs, where a masked string is a valid value (json/jsonb/arrays keep their syntax: see below). */
const TEXT_LIKE_TYPES = new Set([
  25, // text
  1043, // varchar
  1042, // bpchar
  19, // name
  705, // unknown
  114, // json
  3802, // jsonb
  1009, // text[]
  1015, // varchar[]
  2249, // record (row_to_json of a row comes as json; a bare ROW as record text)
]);

export function isTextLike(typeOid: number): boolean {
  return TEXT_LIKE_TYPES.has(typeOid);
}

export type DetectedKind = 'email' | 'card' | 'ssn' | 'phone' | 'iban';

export interface Detector {
  kind: DetectedKind;
  /** A cheap precondition: values without it cannot match, and skip the regular expression. */
  mayMatch: (value: string) => boolean;
  pattern: RegExp;
  /** A second look at a pattern match, for checksums (Luhn, IBAN mod 97). */
  confirm?: (match: string) => boolean;
}

function hasDigit(value: string): boolean {
  for (let i = 0; i < value.length; i += 1) {
    const code = value.charCodeAt(i);
    if (code >= 48 && code <= 57) return true;
  }
  return false;
}

function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i -= 1) {
    let digit = digits.charCodeAt(i) - 48;
    if (double) {
      digit *= 2;
      if (digit > 9) digit -= 9;
    }
    sum += digit;
    double = !double;
  }
  return sum % 10 === 0;
}

function ibanValid(candidate: string): boolean {
  const rearranged = candidate.slice(4) + candidate.slice(0, 4);
  let remainder = 0;
  for (const char of rearranged) {
    const value = /[A-Z]/.test(char) ? String(char.charCodeAt(0) - 55) : char;
    for (const digit of value) remainder = (remainder * 10 + Number(digit)) % 97;
  }
  return remainder === 1;
}

/**
 * Ordered: cards before phones (a 16-digit card can look like a phone number run), IBAN before cards. Every pattern
 * replaces only characters that cannot break JSON, array or record syntax.
 */
export const DETECTORS: readonly Detector[] = [
  // RFC 5322 atext in the local part (not only the common letters), any dotted domain.
  { kind: 'email', mayMatch: (value) => value.includes('@'), pattern: /[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+/g },
  // Digit runs are delimited by non-digits, not word boundaries: 'x4111…' must still be found.
  { kind: 'iban', mayMatch: hasDigit, pattern: /(?<![A-Z0-9])[A-Z]{2}\d{2}[A-Z0-9]{11,30}(?![A-Z0-9])/g, confirm: ibanValid },
  { kind: 'card', mayMatch: hasDigit, pattern: /(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)/g, confirm: (match) => luhnValid(match.replace(/\D/g, '')) },
  { kind: 'ssn', mayMatch: (value) => value.includes('-'), pattern: /(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)/g },
  { kind: 'phone', mayMatch: hasDigit, pattern: /(?:\+\d{1,3}[-. ]?)?\(?(?<!\d)\d{3}\)?[-. ]\d{3}[-. ]\d{4}(?!\d)/g },
];

/**
 * The same detectors as whole-value tests: a value *is* an email (card, …) when the detector's first match is all of
 * it. Anchored patterns give that answer without scanning for matches inside the value, which matters for a
 * column masked row by row. Equivalence with DETECTORS is tested (test/unit/mask-detectors.test.ts).
 */
const WHOLE_VALUE: ReadonlyArray<{ kind: DetectedKind; pattern: RegExp; confirm?: (value: string) => boolean }> = [
  { kind: 'email', pattern: /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$/ },
  { kind: 'iban', pattern: /^[A-Z]{2}\d{2}[A-Z0-9]{11,30}$/, confirm: ibanValid },
  { kind: 'card', pattern: /^\d(?:[ -]?\d){12,18}$/, confirm: (value) => luhnValid(value.replace(/\D/g, '')) },
  { kind: 'ssn', pattern: /^\d{3}-\d{2}-\d{4}$/ },
  // The lookbehind matters here too: '+0000-000-0000' is a country code run into the area code, not a phone number.
  { kind: 'phone', pattern: /^(?:\+\d{1,3}[-. ]?)?\(?(?<!\d)\d{3}\)?[-. ]\d{3}[-. ]\d{4}$/ },
];

/** What a whole value is, for partial masking: one of the detected kinds, or generic. */
export function detectKind(value: string, knownNotEmail = false): DetectedKind | 'generic' {
  for (let index = knownNotEmail ? 1 : 0; index < WHOLE_VALUE.length; index += 1) {
    const detector = WHOLE_VALUE[index]!;
    if (detector.pattern.test(value) && (!detector.confirm || detector.confirm(value))) return detector.kind;
  }
  return 'generic';
}

/** Byte classes for `isEmailBytes`: 1 = allowed in the local part (RFC 5322 atext and '.'), 2 = in a domain label. */
const EMAIL_BYTES = (() => {
  const table = new Uint8Array(128);
  const local = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+/=?^_`{|}~.-";
  for (const char of local) table[char.charCodeAt(0)]! |= 1;
  for (const char of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-') table[char.charCodeAt(0)]! |= 2;
  return table;
})();

/** WHOLE_VALUE's email pattern on ASCII bytes: local part `[start, at)`, '@' at `at`, dotted domain up to `end`. */
function isEmailBytes(source: Buffer, start: number, at: number, end: number): boolean {
  if (at <= start) return false;
  for (let i = start; i < at; i += 1) if ((EMAIL_BYTES[source[i]!]! & 1) === 0) return false;
  let labels = 0;
  let labelLength = 0;
  for (let i = at + 1; i < end; i += 1) {
    const byte = source[i]!;
    if (byte === 46) {
      if (labelLength === 0) return false;
      labels += 1;
      labelLength = 0;
    } else if ((EMAIL_BYTES[byte]! & 2) !== 0) {
      labelLength += 1;
    } else {
      return false;
    }
  }
  return labelLength > 0 && labels >= 1;
}

/**
 * A partial mask computed on bytes: the masked value is `head` followed by the source bytes `[from, to)` (the
 * domain of an email, the last four digits), so the caller can write it without building a string.
 */
export interface BytePartialMask {
  head: string;
  from: number;
  to: number;
}

/**
 * The partial mask of an ASCII text value held in `source[start, end)`, computed on the bytes where it can be: the
 * same result as `maskValue` of the partial masker for a text column, without decoding the value first (this runs
 * for every masked value of every row). Fills `into` and returns true; false when the value is not ASCII (the caller
 * takes the string path).
 *
 * Shortcuts, each giving what `partial(detectKind(value), value)` gives: after the email test, a value of at most 8
 * characters is too short for any other kind (generic: `****`); a longer one ending in four digits gets `****` and
 * those digits whether it is a card, IBAN, phone number, SSN or none of them. Only the rest is decoded and tested.
 */
export function partialMaskAscii(source: Buffer, start: number, end: number, into: BytePartialMask): boolean {
  let at = -1;
  for (let i = start; i < end; i += 1) {
    const byte = source[i]!;
    if (byte >= 0x80) return false;
    if (byte === 64 && at < 0) at = i;
  }
  if (at > start && isEmailBytes(source, start, at, end)) {
    into.head = EMAIL_HEADS[source[start]!]!;
    into.from = at;
    into.to = end;
  } else if (end - start <= 8) {
    into.head = '****';
    into.from = into.to = end;
  } else if (isDigit(source[end - 1]!) && isDigit(source[end - 2]!) && isDigit(source[end - 3]!) && isDigit(source[end - 4]!)) {
    into.head = '****';
    into.from = end - 4;
    into.to = end;
  } else {
    const value = source.toString('latin1', start, end);
    into.head = partial(detectKind(value, true), value);
    into.from = into.to = end;
  }
  return true;
}

/** `x***` for every ASCII first character x of an email, made once. */
const EMAIL_HEADS = Array.from({ length: 128 }, (_, code) => `${String.fromCharCode(code)}***`);

function isDigit(byte: number): boolean {
  return byte >= 48 && byte <= 57;
}

/** The last four digits of a value (fewer when it has fewer). */
function lastFourDigits(value: string): string {
  let digits = '';
  for (let i = value.length - 1; i >= 0 && digits.length < 4; i -= 1) {
    if (isDigit(value.charCodeAt(i))) digits = value[i] + digits;
  }
  return digits;
}

/** Partial masks keep just enough to recognise a value (domain, last four digits), never enough to use it. */
function partial(kind: DetectedKind | 'generic', value: string): string {
  switch (kind) {
    case 'email': {
      const at = value.lastIndexOf('@');
      return at > 0 ? `${value[0]}***${value.slice(at)}` : '****';
    }
    case 'card':
    case 'iban':
    case 'phone':
    case 'ssn':
      return `****${lastFourDigits(value)}`;
    default:
      return value.length > 8 ? `****${value.slice(-4)}` : '****';
  }
}

export interface Masker {
  /** Masks a whole column value known (by lineage or catalog) to be sensitive. null = send SQL NULL. */
  maskValue(value: string, typeOid: number): string | null;
  /**
   * Masks a value computed from a sensitive one (`reverse(ssn)`, `row_to_json(c)`): nothing of it is kept, since a
   * computed value need not look like what it came from. Text-like values become the style's token, in the syntax of
   * their type (a JSON string, a one-element array or record); other types and the null style send NULL.
   */
  maskWhole(value: string, typeOid: number): string | null;
  /**
   * Scans a value of unknown lineage and masks what the detectors find inside it.
   * @returns the masked text, or undefined when nothing was found (the original bytes can be sent unchanged).
   */
  maskDetected(value: string): string | undefined;
}

export function createMasker(style: MaskStyle, hashKey: Buffer): Masker {
  const hash = (value: string): string => `h:${createHmac('sha256', hashKey).update(value).digest('hex').slice(0, 16)}`;
  const styled = (kind: DetectedKind | 'generic', value: string): string => {
    switch (style) {
      case 'redact':
        return '[redacted]';
      case 'hash':
        return hash(value);
      case 'partial':
      case 'null':
        return partial(kind, value);
    }
  };
  return {
    maskValue(value, typeOid) {
      if (style === 'null' || !isTextLike(typeOid)) return null;
      if (typeOid === 114 || typeOid === 3802 || typeOid === 1009 || typeOid === 1015 || typeOid === 2249) {
        // A structured value of a masked column: mask what is inside, keep the syntax.
        return this.maskDetected(value) ?? styled('generic', value).replace(/[^*A-Za-z0-9:]/g, '*');
      }
      return styled(detectKind(value), value);
    },
    maskWhole(value, typeOid) {
      if (style === 'null' || !isTextLike(typeOid)) return null;
      const token = style === 'hash' ? hash(value) : style === 'redact' ? '[redacted]' : '****';
      switch (typeOid) {
        case 114: // json
        case 3802: // jsonb
          return JSON.stringify(token);
        case 1009: // text[]
        case 1015: // varchar[]
          return `{"${token}"}`;
        case 2249: // record
          return `("${token}")`;
        default:
          return token;
      }
    },
    maskDetected(value) {
      let changed = false;
      let out = value;
      for (const detector of DETECTORS) {
        if (!detector.mayMatch(out)) continue;
        detector.pattern.lastIndex = 0;
        out = out.replace(detector.pattern, (match) => {
          if (detector.confirm && !detector.confirm(match)) return match;
          changed = true;
          // Inside structured text only JSON/array-safe characters may be written.
          return style === 'hash' ? hash(match) : style === 'redact' ? '[redacted]' : partial(detector.kind, match);
        });
      }
      return changed ? out : undefined;
    },
  };
}
