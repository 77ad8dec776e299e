/**
 * What the policy knows of the target's catalog. Views: rules that name tables match statements on views over them,
 * and inference protection follows a view column to the table column behind it (views resolved from definitions as
 * pg_get_viewdef prints them, policyViews in view-lineage.ts, parsed with the real grammar). Masked columns renamed
 * on the database are judged under their policy names; a missing one fails closed. The demo policy decides.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { classifyStatements, loadStatementParser } from '../../src/gateway/policy/classify.js';
import { DEMO_POLICY, evaluate, parsePolicy, type Decision, type Policy } from '../../src/gateway/policy/policy.js';
import { policyCatalog, type PolicyCatalog, type RenamedColumn } from '../../src/gateway/policy/target-catalog.js';
import { policyViews, relationName, type ViewDefinition } from '../../src/gateway/masking/view-lineage.js';

type Person = 'alice' | 'bob' | 'carol';
const PEOPLE: Record<Person, { subject: string; groups: string[]; kind: 'human' }> = {
  alice: { subject: 'alice', groups: ['engineering'], kind: 'human' },
  bob: { subject: 'bob', groups: ['dba'], kind: 'human' },
  carol: { subject: 'carol', groups: ['security'], kind: 'human' },
};

let nextOid = 30_000;
function view(name: string, columns: string[], definition: string | null, schema = 'public'): ViewDefinition {
  return { oid: nextOid++, schema, name, columns: columns.map((column, index) => ({ name: column, attnum: index + 1 })), definition };
}

const CONTACTS = view('contacts', ['id', 'name', 'email'],
  ' SELECT customers.id,\n    customers.name,\n    customers.email\n   FROM customers;');
const SHOUTING = view('shouting', ['id', 'loud'], ' SELECT contacts.id,\n    upper(contacts.email) AS loud\n   FROM contacts;');
const CARDS = view('cards', ['id', 'amount', 'card_number'],
  ' SELECT payments.id,\n    payments.amount,\n    payments.card_number\n   FROM payments;');
const OPAQUE = view('opaque', ['id', 'x'], ' SELECT customers.id,\n    my_secret_fn(customers.id) AS x\n   FROM customers;');
const OVER_OPAQUE = view('over_opaque', ['id'], ' SELECT opaque.id\n   FROM opaque;');
const ELSEWHERE = view('contacts', ['id', 'email'], ' SELECT customers.id,\n    customers.email\n   FROM customers;', 'reports');
const ALL_VIEWS = [CONTACTS, SHOUTING, CARDS, OPAQUE, OVER_OPAQUE, ELSEWHERE];

function viewsOf(views: ViewDefinition[], columns: { renamed?: RenamedColumn[]; missing?: string[] } = {}): PolicyCatalog {
  const relations = new Map<string, number>([
    [relationName('public', 'customers'), 16_384],
    [relationName('public', 'payments'), 16_390],
  ]);
  for (const v of views) relations.set(relationName(v.schema, v.name), v.oid);
  return policyCatalog({
    views: policyViews({ views, relations, searchPath: ['pg_catalog', 'public'] }),
    renamedColumns: columns.renamed ?? [],
    missingColumns: new Set(columns.missing ?? []),
  });
}

function decide(who: Person, sql: string, options: { policy?: Policy; searchPath?: string[]; catalog?: PolicyCatalog } = {}): Decision {
  return evaluate(options.policy ?? DEMO_POLICY, {
    identity: PEOPLE[who],
    target: 'prod-orders',
    searchPath: options.searchPath ?? ['$user', 'public'],
    classification: classifyStatements(sql),
    catalog: options.catalog ?? viewsOf(ALL_VIEWS),
  });
}

beforeAll(async () => {
  await loadStatementParser();
});

describe('views as the policy sees them', () => {
  it('resolves a view to the tables it reads and the table columns behind each column, through views of views', () => {
    const views = viewsOf(ALL_VIEWS);
    const shouting = views.views.get('shouting')![0]!;
    expect(shouting.tables).toEqual([{ schema: 'public', name: 'customers' }]);
    expect(shouting.columns!.get('loud')).toEqual([{ schema: 'public', table: 'customers', column: 'email' }]);
    expect(shouting.columns!.get('id')).toEqual([{ schema: 'public', table: 'customers', column: 'id' }]);
  });

  it('cannot see through a view that calls a function it cannot see into, nor through a view over one', () => {
    const views = viewsOf(ALL_VIEWS);
    expect(views.views.get('opaque')![0]).toMatchObject({ tables: null, columns: null });
    expect(views.views.get('over_opaque')![0]).toMatchObject({ tables: null, columns: null });
  });

  it('changes its version exactly when a definition changes what stands behind a view', () => {
    const same = viewsOf([view('contacts', ['id', 'name', 'email'], CONTACTS.definition)]);
    expect(same.version).toBe(viewsOf([CONTACTS]).version);
    const changed = viewsOf([view('contacts', ['id', 'name', 'email'],
      ' SELECT customers.id,\n    customers.email AS name,\n    customers.email\n   FROM customers;')]);
    expect(changed.version).not.toBe(same.version);
  });
});

describe('inference protection through views', () => {
  it.each([
    ['select id from contacts where email = \'a@example.com\'', 'filtering on contacts.email (public.customers.email behind the view)'],
    ['select id from contacts order by email', 'sorting by contacts.email'],
    ['select c.id from public.contacts c join orders o on o.customer_id = c.id and c.email like \'k%\'', 'joining on public.contacts.email'],
    ['select id from shouting where loud like \'A%\'', 'filtering on shouting.loud (public.customers.email behind the view)'],
    ['select distinct * from contacts', 'deduplicating on contacts.*'],
    ['select id from cards group by card_number, id', 'grouping by cards.card_number'],
  ])('denies %s', (sql, wording) => {
    const decision = decide('alice', sql);
    expect(decision).toMatchObject({ action: 'deny', ruleId: 'builtin:inference' });
    expect(decision.message).toContain(wording);
  });

  it('allows conditions on view columns with no masked column behind them', () => {
    expect(decide('alice', 'select email from contacts where id = 1 and name like \'K%\' order by id').action).toBe('mask');
    expect(decide('alice', 'select loud from shouting where id > 10').action).toBe('mask');
  });

  it('does not apply to identities with nothing masked', () => {
    expect(decide('carol', 'select id from contacts where email = \'a@example.com\'').action).toBe('allow');
  });

  it('denies revealing uses of the columns of a view it cannot analyse, to identities with masked columns', () => {
    const decision = decide('alice', 'select id from opaque where x = 1');
    expect(decision).toMatchObject({ action: 'deny', ruleId: 'builtin:inference' });
    expect(decision.message).toContain('cannot analyse the definition of view public.opaque');
    expect(decide('alice', 'select id, x from opaque').action).toBe('mask');
    expect(decide('carol', 'select id from opaque where x = 1').action).toBe('allow');
  });

  it('resolves an unqualified view through the search_path, a qualified one in its schema', () => {
    // Only reports.contacts is on this search_path; it passes customers.email too.
    expect(decide('alice', 'select id from contacts where email = \'x\'', { searchPath: ['reports'] }).action).toBe('deny');
    const notAView = decide('alice', 'select id from elsewhere.contacts where email = \'x\'');
    expect(notAView.ruleId).not.toBe('builtin:inference');
  });
});

describe('rules that name tables, through views', () => {
  it('holds a write through an updatable view over a table whose writes are held', () => {
    const decision = decide('bob', 'update cards set amount = 0 where id = 1');
    expect(decision).toMatchObject({ action: 'hold', ruleId: 'hold-payments-writes' });
    // The statement is described by what it names, not by what stands behind the view.
    expect(decision.message).toContain('UPDATE on cards');
    expect(decide('bob', 'update contacts set name = \'x\' where id = 1').action).toBe('allow');
  });

  it('matches a mask rule limited to a table on a statement that reads it through a view', () => {
    const policy = parsePolicy({
      grants: [{ groups: ['engineering'], targets: ['prod-orders'], access: 'read' }],
      rules: [{ id: 'mask-customers', match: { tables: ['public.customers'] }, action: 'mask', columns: ['public.customers.email'] }],
    });
    expect(decide('alice', 'select * from shouting', { policy })).toMatchObject({ action: 'mask', ruleId: 'mask-customers' });
    expect(decide('alice', 'select * from cards', { policy }).action).toBe('allow');
  });

  it('does not let a permission rule reach a table through a view', () => {
    const policy = parsePolicy({
      grants: [{ groups: ['engineering'], targets: ['prod-orders'], access: 'read' }],
      rules: [
        { id: 'deny-payments', match: { tables: ['public.payments'] }, action: 'deny', reason: 'no payments' },
        { id: 'allow-customers', match: { tables: ['public.customers'] }, action: 'allow' },
      ],
    });
    expect(decide('alice', 'select * from cards', { policy })).toMatchObject({ action: 'deny', ruleId: 'deny-payments' });
    expect(decide('alice', 'select * from contacts', { policy }).ruleId).not.toBe('allow-customers');
    expect(decide('alice', 'select * from customers', { policy }).ruleId).toBe('allow-customers');
  });

  it('lets restrictions that name tables match a view it cannot analyse (fail closed)', () => {
    expect(decide('bob', 'update over_opaque set id = id where id = 1')).toMatchObject({ action: 'hold', ruleId: 'hold-payments-writes' });
    expect(decide('bob', 'select * from over_opaque').action).toBe('allow');
  });
});

describe('masked columns the database renamed, or lost', () => {
  // customers.email is now customers.mail; the contacts view, printed again by pg_get_viewdef, says so too.
  const renamed: RenamedColumn = { schema: 'public', table: 'customers', column: 'mail', policyName: 'public.customers.email' };
  const contacts = view('contacts', ['id', 'email'], ' SELECT customers.id,\n    customers.mail AS email\n   FROM customers;');
  let catalog: PolicyCatalog;
  beforeAll(() => {
    catalog = viewsOf([contacts], { renamed: [renamed] });
  });

  it('judges a renamed masked column as the policy\'s column: inference protection', () => {
    const decision = decide('alice', 'select id from customers where mail = \'a@example.com\'', { catalog });
    expect(decision).toMatchObject({ action: 'deny', ruleId: 'builtin:inference' });
    expect(decision.message).toContain('customers.mail (masked as public.customers.email, which was renamed)');
    expect(decide('alice', 'select id from contacts order by email', { catalog }).ruleId).toBe('builtin:inference');
    expect(decide('alice', 'select id from customers where name = \'x\'', { catalog }).action).toBe('mask');
  });

  it('judges a renamed masked column as the policy\'s column: values computed from it are masked whole', () => {
    const decision = decide('alice', 'select id, length(mail), upper(name) from customers', { catalog });
    expect(decision.action).toBe('mask');
    expect(decision.derivedOutputs?.columns.map((column) => column.masked)).toEqual([false, true, false]);
  });

  it('does not follow the new name into another schema\'s table of the same name', () => {
    expect(decide('alice', 'select id from archive.customers where mail = \'x\'', { catalog }).action).toBe('mask');
  });

  it('refuses masked reads of a table whose masked column cannot be found, and only those', () => {
    const lost = viewsOf([], { missing: ['public.customers.email'] });
    const decision = decide('alice', 'select id, name from customers', { catalog: lost });
    expect(decision).toMatchObject({ action: 'deny', ruleId: 'builtin:masked-column-missing' });
    expect(decision.message).toContain('public.customers.email');
    expect(decision.hint).toContain('gateway operator');
    expect(decide('alice', 'select * from orders', { catalog: lost }).ruleId).not.toBe('builtin:masked-column-missing');
    expect(decide('carol', 'select id, name from customers', { catalog: lost }).action).toBe('allow');
  });
});
