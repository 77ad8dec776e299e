import { describe, expect, it } from 'vitest';
import { gatewayRefusal } from '../../src/shared/refusals.js';

describe('telling gateway refusals from database errors', () => {
  it('reads a dbgate denial and a dbgate hold', () => {
    expect(gatewayRefusal('42501', 'dbgate: DELETE on orders denied: without a WHERE clause')).toBe('denied');
    expect(gatewayRefusal('42501', 'dbgate: DROP TABLE on customers is held for approval: schema changes')).toBe('held');
  });

  it("does not take PostgreSQL's own permission error, or another SQLSTATE, for a policy decision", () => {
    expect(gatewayRefusal('42501', 'permission denied for table customers')).toBeUndefined();
    expect(gatewayRefusal('42601', 'dbgate: something else')).toBeUndefined();
    expect(gatewayRefusal(undefined, undefined)).toBeUndefined();
  });
});
