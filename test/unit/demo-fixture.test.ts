import { describe, expect, it } from 'vitest';
import {
  DEMO_DATABASE,
  DEMO_TARGET_NAME,
  generateCustomers,
  generateDemoData,
  generateOrders,
  generatePayments,
  isLuhnValid,
  luhnCheckDigit,
  mulberry32,
} from '../../src/dev/demo-fixture.js';

describe('demo fixture names', () => {
  it('exposes the demo target and database names', () => {
    expect(DEMO_TARGET_NAME).toBe('prod-orders');
    expect(DEMO_DATABASE).toBe('prod_orders');
  });
});

describe('isLuhnValid', () => {
  it('accepts well-known valid numbers', () => {
    for (const n of ['4111111111111111', '5555555555554444', '4012888888881881', '79927398713', '00']) {
      expect(isLuhnValid(n), n).toBe(true);
    }
  });

  it('rejects numbers with a wrong check digit', () => {
    for (const n of ['4111111111111112', '5555555555554440', '79927398710']) {
      expect(isLuhnValid(n), n).toBe(false);
    }
  });

  it('rejects anything that is not plain digits', () => {
    for (const n of ['', '0', '4111 1111 1111 1111', '4111-1111-1111-1111', 'abcd', ' 4111111111111111', '４１']) {
      expect(isLuhnValid(n), JSON.stringify(n)).toBe(false);
    }
  });

  it('agrees with luhnCheckDigit', () => {
    const rng = mulberry32(7);
    for (let i = 0; i < 200; i++) {
      let payload = '';
      const len = 1 + Math.floor(rng() * 20);
      for (let j = 0; j < len; j++) payload += String(Math.floor(rng() * 10));
      const check = luhnCheckDigit(payload);
      expect(isLuhnValid(payload + check)).toBe(true);
      expect(isLuhnValid(payload + String((Number(check) + 1) % 10))).toBe(false);
    }
  });
});

describe('mulberry32', () => {
  it('produces the same stream for the same seed and floats in [0, 1)', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    for (let i = 0; i < 1000; i++) {
      const x = a();
      expect(x).toBe(b());
      expect(x).toBeGreaterThanOrEqual(0);
      expect(x).toBeLessThan(1);
    }
  });
});

describe('demo data generators', () => {
  const data = generateDemoData();

  it('default to 1000 customers with 1-4 orders each', () => {
    expect(data.customers).toHaveLength(1000);
    const perCustomer = new Map<number, number>();
    for (const o of data.orders) perCustomer.set(o.customerId, (perCustomer.get(o.customerId) ?? 0) + 1);
    expect(perCustomer.size).toBe(1000);
    for (const n of perCustomer.values()) {
      expect(n).toBeGreaterThanOrEqual(1);
      expect(n).toBeLessThanOrEqual(4);
    }
  });

  it('are deterministic: same seed gives identical rows', () => {
    expect(JSON.stringify(generateDemoData({ seed: 42 }))).toBe(JSON.stringify(data));
    expect(generateCustomers(50, 9)).toEqual(generateCustomers(50, 9));
  });

  it('give different data for different seeds', () => {
    expect(generateCustomers(50, 1)).not.toEqual(generateCustomers(50, 2));
  });

  it('generate customers as a stable prefix when the count grows', () => {
    expect(generateCustomers(10, 42)).toEqual(data.customers.slice(0, 10));
  });

  it('assign sequential ids starting at 1', () => {
    data.customers.forEach((c, i) => expect(c.id).toBe(i + 1));
    data.orders.forEach((o, i) => expect(o.id).toBe(i + 1));
    data.payments.forEach((p, i) => expect(p.id).toBe(i + 1));
  });

  it('generate well-formed, unique customer PII', () => {
    const emails = new Set<string>();
    for (const c of data.customers) {
      expect(c.name).toMatch(/^[A-Z][a-z]+ [A-Z][A-Za-z']+$/);
      expect(c.email).toMatch(/^[a-z]+\.[a-z]+\d+@example\.(com|org|net)$/);
      expect(c.phone).toMatch(/^\+1-555-\d{3}-\d{4}$/);
      expect(c.ssn).toMatch(/^\d{3}-\d{2}-\d{4}$/);
      const [area, group, serial] = c.ssn.split('-');
      expect(area).not.toBe('000');
      expect(area).not.toBe('666');
      expect(area?.startsWith('9')).toBe(false);
      expect(group).not.toBe('00');
      expect(serial).not.toBe('0000');
      expect(c.createdAt.startsWith('2024-')).toBe(true);
      emails.add(c.email);
    }
    expect(emails.size).toBe(data.customers.length);
    const domains = new Set(data.customers.map((c) => c.email.split('@')[1]));
    expect(domains).toEqual(new Set(['example.com', 'example.org', 'example.net']));
  });

  it('place orders after their customer was created, within 2024', () => {
    const byId = new Map(data.customers.map((c) => [c.id, c]));
    for (const o of data.orders) {
      const c = byId.get(o.customerId);
      expect(c).toBeDefined();
      expect(Date.parse(o.createdAt)).toBeGreaterThan(Date.parse(c?.createdAt ?? ''));
      expect(o.createdAt.startsWith('2024-')).toBe(true);
      expect(o.totalCents).toBeGreaterThanOrEqual(0);
    }
    expect(new Set(data.orders.map((o) => o.status))).toEqual(
      new Set(['pending', 'paid', 'shipped', 'cancelled', 'refunded']),
    );
  });

  it('pay exactly the paid/shipped/refunded orders, with Luhn-valid Visa/Mastercard numbers', () => {
    const ordersById = new Map(data.orders.map((o) => [o.id, o]));
    const successful = new Map<number, number>();
    for (const p of data.payments) {
      const o = ordersById.get(p.orderId);
      expect(o).toBeDefined();
      expect(['paid', 'shipped', 'refunded']).toContain(o?.status);
      expect(p.cardNumber).toMatch(/^(4\d{15}|5[1-5]\d{14})$/);
      expect(isLuhnValid(p.cardNumber)).toBe(true);
      expect(p.amountCents).toBe(o?.totalCents);
      expect(Date.parse(p.createdAt)).toBeGreaterThan(Date.parse(o?.createdAt ?? ''));
      if (p.status !== 'failed') successful.set(p.orderId, (successful.get(p.orderId) ?? 0) + 1);
      if (o?.status === 'refunded' && p.status !== 'failed') expect(p.status).toBe('refunded');
    }
    for (const o of data.orders) {
      const expected = o.status === 'paid' || o.status === 'shipped' || o.status === 'refunded' ? 1 : 0;
      expect(successful.get(o.id) ?? 0).toBe(expected);
    }
    expect(new Set(data.payments.map((p) => p.status))).toEqual(
      new Set(['authorized', 'captured', 'failed', 'refunded']),
    );
  });

  it('build orders and payments deterministically from their inputs', () => {
    expect(generateOrders(data.customers, 42)).toEqual(data.orders);
    expect(generatePayments(data.orders, 42)).toEqual(data.payments);
  });

  it('reject invalid counts', () => {
    expect(() => generateCustomers(-1, 42)).toThrow(RangeError);
    expect(() => generateCustomers(1.5, 42)).toThrow(RangeError);
    expect(() => generateDemoData({ customers: 0 })).toThrow(RangeError);
  });
});
