/**
 * Mask styles and content detectors. A masked value must stay parseable as the column's declared type, so text-like
 * types get a masked string, and any other type gets NULL (valid for every type).
 */
import { createHmac } from 'node:crypto';

export type MaskStyle = 'redact' | 'partial' | 'hash' | 'null';

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

interface Detector {
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
const DETECTORS: Detector[] = [
  // RFC 5322 atext in the local part (not only the common letters), any dotted domain.
  { kind: 'email', mayMatch: (value) => value.includes('@'), pattern: /[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+/g },
  // Digit runs are delimited by non-digits, not word boundaries: 'x4111…' must still be found.
  { kind: 'iban', mayMatch: hasDigit, pattern: /(?<![A-Z0-9])[A-Z]{2}\d{2}[A-Z0-9]{11,30}(?![A-Z0-9])/g, confirm: ibanValid },
  { kind: 'card', mayMatch: hasDigit, pattern: /(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)/g, confirm: (match) => luhnValid(match.replace(/\D/g, '')) },
  { kind: 'ssn', mayMatch: (value) => value.includes('-'), pattern: /(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)/g },
  { kind: 'phone', mayMatch: hasDigit, pattern: /(?:\+\d{1,3}[-. ]?)?\(?(?<!\d)\d{3}\)?[-. ]\d{3}[-. ]\d{4}(?!\d)/g },
];

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
    case 'ssn': {
      const digits = value.replace(/\D/g, '');
      return `****${digits.slice(-4)}`;
    }
    default:
      return value.length > 8 ? `****${value.slice(-4)}` : '****';
  }
}

export interface Masker {
  /** Masks a whole column value known (by lineage or catalog) to be sensitive. null = send SQL NULL. */
  maskValue(value: string, typeOid: number): string | null;
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
  const detectKind = (value: string): DetectedKind | 'generic' => {
    for (const detector of DETECTORS) {
      if (!detector.mayMatch(value)) continue;
      detector.pattern.lastIndex = 0;
      const match = detector.pattern.exec(value);
      if (match && match[0] === value && (!detector.confirm || detector.confirm(match[0]))) return detector.kind;
    }
    return 'generic';
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
