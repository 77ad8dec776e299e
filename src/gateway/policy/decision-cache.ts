/**
 * Decisions for repeated statements without re-parsing. pgbench-style traffic sends the same few texts over and over;
 * parsing and walking each one costs tens of microseconds, a Map lookup well under one.
 *
 * Two bounded LRU maps:
 * - classifications by exact statement text (a classification depends on nothing else), shared across identities;
 * - decisions by everything `evaluate` reads: policy version, identity kind, sorted groups, target, search_path,
 *   default search_path and the exact statement text. `evaluate` is pure, so a hit is the decision it would return.
 *
 * Statements longer than `maxStatementLength` are not cached (they are rarely repeated byte for byte, and would let
 * a client fill the cache with megabytes of text); `maxEntries` bounds each map.
 */
import { classifyStatements, type Classification } from './classify.js';
import { evaluate, type Decision, type EvaluationInput, type Policy } from './policy.js';

export interface DecisionCacheOptions {
  /** Entries per map (classifications, decisions). Default 10,000. */
  maxEntries?: number;
  /** Longer statement texts are classified and judged every time. Default 8 KiB of characters. */
  maxStatementLength?: number;
}

export interface DecideRequest extends Omit<EvaluationInput, 'classification'> {
  /** The exact statement text of the Query or Parse message. */
  sql: string;
}

export interface CachedDecision {
  decision: Decision;
  classification: Classification;
  /** Whether the decision came from the cache (no parse, no evaluation). */
  cached: boolean;
}

export interface DecisionCacheStats {
  hits: number;
  misses: number;
  classificationHits: number;
  size: number;
}

/** A Map used as an LRU: re-inserting on access keeps the most recently used entries last. */
class LruMap<V> {
  private readonly entries = new Map<string, V>();
  constructor(private readonly capacity: number) {}

  get(key: string): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.capacity) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }
}

/**
 * Classifies and judges statements, remembering both. One instance per gateway process; safe to share across
 * connections (decisions are immutable: frozen before they are cached).
 */
export class DecisionCache {
  private readonly decisions: LruMap<CachedDecision>;
  private readonly classifications: LruMap<Classification>;
  private readonly maxStatementLength: number;
  private hits = 0;
  private misses = 0;
  private classificationHits = 0;

  constructor(options: DecisionCacheOptions = {}) {
    const maxEntries = options.maxEntries ?? 10_000;
    this.decisions = new LruMap(maxEntries);
    this.classifications = new LruMap(maxEntries);
    this.maxStatementLength = options.maxStatementLength ?? 8192;
  }

  /** The decision for `request.sql`; classifies and evaluates only on a miss. */
  decide(policy: Policy, request: DecideRequest): CachedDecision {
    const cacheable = request.sql.length <= this.maxStatementLength;
    const key = cacheable ? decisionKey(policy, request) : undefined;
    if (key !== undefined) {
      const hit = this.decisions.get(key);
      if (hit !== undefined) {
        this.hits += 1;
        return hit.cached ? hit : { ...hit, cached: true };
      }
    }
    this.misses += 1;
    const classification = this.classify(request.sql, cacheable);
    const input: EvaluationInput = {
      identity: request.identity,
      target: request.target,
      searchPath: request.searchPath,
      classification,
    };
    if (request.defaultSearchPath !== undefined) input.defaultSearchPath = request.defaultSearchPath;
    const decision = deepFreeze(evaluate(policy, input));
    const result: CachedDecision = { decision, classification, cached: false };
    if (key !== undefined) this.decisions.set(key, Object.freeze({ decision, classification, cached: true }));
    return result;
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
      size: this.decisions.size,
    };
  }

  /** Forgets everything (a new policy version makes old entries unreachable anyway; this frees them). */
  clear(): void {
    this.decisions.clear();
    this.classifications.clear();
  }
}

/**
 * Everything `evaluate` reads, joined with separators that cannot occur in the parts (NUL never reaches the
 * classifier: it rejects statement texts containing one; group, target and schema names cannot hold one either).
 */
function decisionKey(policy: Policy, request: DecideRequest): string {
  const groups = [...request.identity.groups].sort().join('\u0001');
  const searchPath = request.searchPath.join('\u0001');
  const defaultSearchPath = request.defaultSearchPath?.join('\u0001') ?? '';
  return [
    policy.version,
    request.identity.kind,
    groups,
    request.target,
    searchPath,
    defaultSearchPath,
    request.sql,
  ].join('\u0000');
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}
