/**
 * Whether a classification looked at the value of any literal. The decision cache may reuse a decision for every
 * statement that differs from a classified one only in its literals (`WHERE aid = 1` / `WHERE aid = 2`) — but only
 * when no decision input came from a literal: `set_config('search_path', …)`, `SET client_encoding = …`, the
 * position in `ORDER BY 2` and a DO block's body all do. Every place the classifier reads a literal's value calls
 * `noteLiteralRead`; `classifyStatements` counts them around each parse (classification is synchronous, so one
 * counter for the process is exact).
 */
let reads = 0;

/** Records that the value of a literal went into the classification. */
export function noteLiteralRead(): void {
  reads += 1;
}

/** Runs `classify` and tells whether it read any literal's value. */
export function countingLiteralReads<T>(classify: () => T): { result: T; literalReads: number } {
  const before = reads;
  const result = classify();
  return { result, literalReads: reads - before };
}
