import { ScopeSlot } from '../src/request-scope';

describe('ScopeSlot', () => {
  it('gives each slot its own value through awaits, and nested runs shadow only their slot', async () => {
    const a = new ScopeSlot<string>('a');
    const b = new ScopeSlot<number>('b');
    expect(a.get()).toBeUndefined();
    await a.run('outer', async () => {
      await b.run(1, async () => {
        await Promise.resolve();
        expect([a.get(), b.get()]).toEqual(['outer', 1]);
        await a.run('inner', async () => {
          await new Promise((resolve) => setImmediate(resolve));
          expect([a.get(), b.get()]).toEqual(['inner', 1]);
        });
        expect([a.get(), b.get()]).toEqual(['outer', 1]);
      });
      expect(b.get()).toBeUndefined();
    });
    expect(a.get()).toBeUndefined();
  });

  it('exit leaves only its own slot, also for work that outlives the scope', async () => {
    const a = new ScopeSlot<string>('a');
    const b = new ScopeSlot<string>('b');
    let later: Promise<Array<string | undefined>> | undefined;
    a.run('request', () =>
      b.run('deadline', () => {
        later = b.exit(async () => {
          await new Promise((resolve) => setImmediate(resolve));
          return [a.get(), b.get()];
        });
      }),
    );
    await expect(later).resolves.toEqual(['request', undefined]);
    // Outside any run, exit is the plain call.
    expect(b.exit(() => a.get())).toBeUndefined();
  });

  it('keeps two slots of the same name apart (one per instance, e.g. two apps in one process)', () => {
    const first = new ScopeSlot<string>('documents');
    const second = new ScopeSlot<string>('documents');
    first.run('one', () => expect(second.get()).toBeUndefined());
  });
});
