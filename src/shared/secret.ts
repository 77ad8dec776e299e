import { inspect } from 'node:util';

/**
 * Holds a credential so that it cannot end up in a log by accident: string conversion, JSON and util.inspect all
 * print a placeholder. Only `reveal()` gives the value, and every call site of it is a place to review.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  toString(): string {
    return '[secret]';
  }

  toJSON(): string {
    return '[secret]';
  }

  [inspect.custom](): string {
    return '[secret]';
  }
}
