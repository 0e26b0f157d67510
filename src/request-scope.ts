/**
 * One AsyncLocalStorage for everything a request carries through its async
 * calls (its log record, its deadline, its document scope, its read route),
 * each in a slot of its own. On Node 20 every enabled AsyncLocalStorage costs
 * every promise the process creates a hook call and a property
 * (`_propagate`), whatever it stores: the provider streams' web-stream
 * pipelines create several promises per delta, so four storages cost each
 * delta four times what one does (`.scratch`-style micro-bench: ~1.5 µs per
 * storage per eight promises). A slot reads and writes only its own value.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

type Store = Readonly<Record<symbol, unknown>>;

const storage = new AsyncLocalStorage<Store>();

export class ScopeSlot<T> {
  private readonly key: symbol;

  constructor(name: string) {
    this.key = Symbol(name);
  }

  /** The value the code running now was given by the innermost `run` of this slot; undefined outside one. */
  get(): T | undefined {
    return storage.getStore()?.[this.key] as T | undefined;
  }

  /** Runs `fn` with `value` in this slot; the other slots keep theirs. */
  run<R>(value: T, fn: () => R): R {
    return storage.run({ ...storage.getStore(), [this.key]: value }, fn);
  }

  /** Runs `fn` without this slot's value; the other slots keep theirs. */
  exit<R>(fn: () => R): R {
    const store = storage.getStore();
    if (!store || !(this.key in store)) return fn();
    const { [this.key]: _left, ...rest } = store;
    return storage.run(rest, fn);
  }
}
