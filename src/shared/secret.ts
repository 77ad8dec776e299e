import { inspect } from 'node:util';

/**
 * Holds a credential or private key so that it cannot end up in a log by accident: string conversion, JSON and
 * util.inspect all print a placeholder. Only `reveal()` gives the value, and every call site of it is a place to
 * review.
 */
export class Secret<T = string> {
  readonly #value: T;

  constructor(value: T) {
    this.#value = value;
  }

  reveal(): T {
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
