/**
 * Decisions for repeated statements without re-parsing. pgbench-style traffic sends the same few texts over and over;
 * parsing and walking each one costs tens of microseconds, a Map lookup well under one.
 *
 * Bounded maps that keep what was used recently (RecentlyUsedMap):
 * - classifications by exact statement text (a classification depends on nothing else), shared across identities;
 * - decisions by everything `evaluate` reads: policy version, identity kind, sorted groups, target, search_path,
 *   default search_path, the version of the target's catalog (target-catalog.ts) and the statement text. `evaluate`
 *   is pure, so a hit is the decision it would return. All but the text come from a DecisionScope, keyed once.
 *
 * Texts that differ only in their literals (`… WHERE aid = 17` / `… WHERE aid = 4711`: pgbench -M simple, ORMs that
 * inline values) share one decision, keyed by PostgreSQL's own normalisation of the text (libpg_query's
 * `normalize`, which replaces each constant by `$n` as pg_stat_statements does; it costs a fraction of a parse and
 * walk). A decision is stored under the normalised text only when it provably does not depend on a literal:
 * - the classification of the original text read no literal's value (`literalSensitive`, literal-reads.ts:
 *   setting values, set_config arguments, `ORDER BY 2`, DO bodies), and
 * - the normalised text itself, classified and judged, gets the very same decision. Where a literal stood, the
 *   classifier now sees a parameter whose value it cannot know, and it fails closed on what it cannot know; a
 *   statement whose normalised form does not even parse (`interval $1`) is simply not shared.
 * Two texts with the same normalisation have the same parse tree but for constant values, so the decision carries
 * over. Everything else keeps the exact-text key.
 *
 * Normalising is itself the largest cost left on that path (a few microseconds of WASM per text), so the cache also
 * remembers normalised texts by literal shape (literal-shape.ts: the text with its literals replaced by markers of
 * their kind, found by a pure-JS scan). A shape is remembered only once normalize has verified it — turned a text of
 * that shape into exactly the shape with a parameter of its own for each marker — and then every text of the shape
 * has that normalisation (the argument is in literal-shape.ts); texts the scan cannot vouch for keep calling
 * normalize.
 *
 * Statements longer than `maxStatementLength` are not cached (they are rarely repeated byte for byte, and would let
 * a client fill the cache with megabytes of text); `maxEntries` bounds each map.
 */
import { classifyStatements, normalizeStatementText, type Classification } from './classify.js';
import { isNormalizationOf, literalShape, type LiteralShape } from './literal-shape.js';
import { evaluate, type Decision, type EvaluationInput, type Policy } from './policy.js';

export interface DecisionCacheOptions {
  /** Entries per map (classifications, decisions, normalised misses, literal shapes). Default 10,000. */
  maxEntries?: number;
  /** Longer statement texts are classified and judged every time. Default 8 KiB of characters. */
  maxStatementLength?: number;
}

/**
 * Everything a decision depends on besides the statement text (what `evaluate` reads but the classification).
 * Treat a scope as immutable and make a new one when a part changes (a connection's search_path, its catalog read):
 * the cache derives its key prefix from each scope once.
 */
export type DecisionScope = Omit<EvaluationInput, 'classification'>;

export interface CachedDecision {
  decision: Decision;
  classification: Classification;
  /** Whether the decision came from the cache (no parse, no evaluation). */
  cached: boolean;
}

export interface DecisionCacheStats {
  hits: number;
  /** Hits through the normalised text (included in `hits`). */
  normalizedHits: number;
  /** Normalised texts found by a verified literal shape, without calling normalize. */
  shapeHits: number;
  misses: number;
  classificationHits: number;
  size: number;
}

/**
 * A bounded map that evicts what was not used recently (CLOCK, the second-chance approximation of LRU). A hit only
 * marks its entry: moving it to the back of the Map on every hit, as an exact LRU does, costs a delete and an insert
 * and leaves the Map's table to be rebuilt every few thousand hits — on the path of every statement. When full, the
 * oldest entry goes unless it was used since it was inserted or last spared; then it moves to the back, unmarked.
 */
class RecentlyUsedMap<V> {
  private readonly entries = new Map<string, { value: V; used: boolean }>();
  constructor(private readonly capacity: number) {}

  get(key: string): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    entry.used = true;
    return entry.value;
  }

  set(key: string, value: V): void {
    const entry = this.entries.get(key);
    if (entry !== undefined) {
      entry.value = value;
      entry.used = true;
      return;
    }
    this.entries.set(key, { value, used: false });
    if (this.entries.size > this.capacity) this.evictOne();
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }

  private evictOne(): void {
    // Ends: every entry spared is unmarked, so at the latest it goes when the walk comes round to it again.
    for (const [key, entry] of this.entries) {
      this.entries.delete(key);
      if (!entry.used) return;
      entry.used = false;
      this.entries.set(key, entry);
    }
  }
}

/**
 * Classifies and judges statements, remembering both. One instance per gateway process; safe to share across
 * connections (decisions are immutable: frozen before they are cached).
 */
export class DecisionCache {
  private readonly decisions: RecentlyUsedMap<CachedDecision>;
  private readonly classifications: RecentlyUsedMap<Classification>;
  /** Normalised keys of statements that missed once: a second miss of the same kind tries to share its decision. */
  private readonly normalizedMisses: RecentlyUsedMap<true>;
  /** Normalised texts by verified literal shape (literal-shape.ts). */
  private readonly normalizedByShape: RecentlyUsedMap<string>;
  private readonly prefixes = new WeakMap<DecisionScope, { policy: Policy; prefix: string }>();
  private readonly maxStatementLength: number;
  private hits = 0;
  private normalizedHits = 0;
  private shapeHits = 0;
  private misses = 0;
  private classificationHits = 0;

  constructor(options: DecisionCacheOptions = {}) {
    const maxEntries = options.maxEntries ?? 10_000;
    this.decisions = new RecentlyUsedMap(maxEntries);
    this.classifications = new RecentlyUsedMap(maxEntries);
    this.normalizedMisses = new RecentlyUsedMap(maxEntries);
    this.normalizedByShape = new RecentlyUsedMap(maxEntries);
    this.maxStatementLength = options.maxStatementLength ?? 8192;
  }

  /** The decision for `sql` in `scope`; classifies and evaluates only on a miss. */
  decide(policy: Policy, scope: DecisionScope, sql: string): CachedDecision {
    const cacheable = sql.length <= this.maxStatementLength;
    if (!cacheable) return this.evaluateText(policy, scope, sql, false);
    const prefix = this.keyPrefix(policy, scope);
    // The cheapest way first: a verified literal shape gives the normalised text (texts differing in literals are
    // the common repetition), then the exact text, and only then normalize. A text's decision under its normalised
    // text is the decision of its exact text, so the order changes nothing but the cost.
    const shape = literalShape(sql);
    const shapeNormalized = shape === undefined ? undefined : this.normalizedByShape.get(shape.key);
    if (shapeNormalized !== undefined) {
      this.shapeHits += 1;
      const shared = this.decisions.get(normalizedKey(prefix, shapeNormalized));
      if (shared !== undefined) return this.hit(true, shared);
    }
    const key = exactKey(prefix, sql);
    const hit = this.decisions.get(key);
    if (hit !== undefined) return this.hit(false, hit);
    const normalized = shapeNormalized ?? this.normalize(sql, shape);
    const sharedKey = normalized === undefined ? undefined : normalizedKey(prefix, normalized);
    if (sharedKey !== undefined && shapeNormalized === undefined) {
      const shared = this.decisions.get(sharedKey);
      if (shared !== undefined) return this.hit(true, shared);
    }
    this.misses += 1;
    const result = this.evaluateText(policy, scope, sql, true);
    const cached: CachedDecision = Object.freeze({ ...result, cached: true });
    this.decisions.set(key, cached);
    // Judging the normalised text costs a second classification: only worth it for a shape seen before.
    if (sharedKey !== undefined && !result.classification.literalSensitive && this.missedBefore(sharedKey)) {
      const general = this.evaluateText(policy, scope, normalized!, true);
      if (sameDecision(general.decision, result.decision)) this.decisions.set(sharedKey, cached);
    }
    return result;
  }

  private hit(normalized: boolean, decision: CachedDecision): CachedDecision {
    this.hits += 1;
    if (normalized) this.normalizedHits += 1;
    return decision;
  }

  /**
   * PostgreSQL's normalisation of `sql` (see `normalizedByParser`), verifying the text's literal shape on the way:
   * normalize's answer is remembered for the shape only when it is the shape with a parameter of its own for each
   * literal, which proves every text of the shape normalises to it (literal-shape.ts).
   */
  private normalize(sql: string, shape: LiteralShape | undefined): string | undefined {
    const normalized = normalizedByParser(sql);
    if (shape !== undefined && normalized !== undefined && isNormalizationOf(normalized, shape)) {
      this.normalizedByShape.set(shape.key, normalized);
    }
    return normalized;
  }

  /** Whether a statement with this normalised key missed the cache before (and records that this one did). */
  private missedBefore(key: string): boolean {
    if (this.normalizedMisses.get(key) !== undefined) return true;
    this.normalizedMisses.set(key, true);
    return false;
  }

  private evaluateText(policy: Policy, scope: DecisionScope, sql: string, cacheable: boolean): CachedDecision {
    const input: EvaluationInput = { ...scope, classification: this.classify(sql, cacheable) };
    return { decision: deepFreeze(evaluate(policy, input)), classification: input.classification, cached: false };
  }

  /** The part of the decision keys a scope gives, built once per scope and policy. */
  private keyPrefix(policy: Policy, scope: DecisionScope): string {
    const known = this.prefixes.get(scope);
    if (known !== undefined && known.policy === policy) return known.prefix;
    const prefix = decisionKeyPrefix(policy, scope);
    this.prefixes.set(scope, { policy, prefix });
    return prefix;
  }

  /** The classification of `sql`, from the cache when possible. */
  classify(sql: string, cacheable = sql.length <= this.maxStatementLength): Classification {
    if (cacheable) {
      const hit = this.classifications.get(sql);
      if (hit !== undefined) {
        this.classificationHits += 1;
        return hit;
      }
    }
    const classification = deepFreeze(classifyStatements(sql));
    if (cacheable) this.classifications.set(sql, classification);
    return classification;
  }

  get stats(): DecisionCacheStats {
    return {
      hits: this.hits,
      misses: this.misses,
      classificationHits: this.classificationHits,
      normalizedHits: this.normalizedHits,
      shapeHits: this.shapeHits,
      size: this.decisions.size,
    };
  }

  /** Forgets everything (a new policy version makes old entries unreachable anyway; this frees them). */
  clear(): void {
    this.decisions.clear();
    this.classifications.clear();
    this.normalizedMisses.clear();
    this.normalizedByShape.clear();
  }
}

/**
 * Everything `evaluate` reads but the statement, joined with separators that cannot occur in the parts (NUL never
 * reaches the classifier: it rejects statement texts containing one; group, target and schema names cannot hold one
 * either). A key is this, then `exact` or `normalized`, NUL, and the text.
 */
function decisionKeyPrefix(policy: Policy, scope: DecisionScope): string {
  const groups = [...scope.identity.groups].sort().join('\u0001');
  const searchPath = scope.searchPath.join('\u0001');
  const defaultSearchPath = scope.defaultSearchPath?.join('\u0001') ?? '';
  const parts = [policy.version, scope.identity.kind, groups, scope.target, searchPath, defaultSearchPath, scope.catalog?.version ?? ''];
  return `${parts.join('\u0000')}\u0000`;
}

function exactKey(prefix: string, sql: string): string {
  return `${prefix}exact\u0000${sql}`;
}

/** A normalised text is also a valid statement text: the marker keeps the two kinds of key apart. */
function normalizedKey(prefix: string, normalized: string): string {
  return `${prefix}normalized\u0000${normalized}`;
}

/**
 * PostgreSQL's normalisation of `sql` (constants → `$n`), or undefined when it has no constants (or does not parse):
 * then there is nothing to share.
 */
function normalizedByParser(sql: string): string | undefined {
  let normalized: string;
  try {
    normalized = normalizeStatementText(sql);
  } catch {
    return undefined;
  }
  return normalized === sql ? undefined : normalized;
}

/** Whether two decisions are interchangeable: everything the proxy and the audit trail use from one. */
function sameDecision(a: Decision, b: Decision): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}
