/**
 * The request context's EntityManager fork, DataLoaders and child logger are made on first use, also through the
 * shallow copy Apollo hands resolvers (`Object.assign(Object.create(proto), context)`, ApolloServer's `cloneObject`):
 * that copy used to call the getters, so every GraphQL request forked an EntityManager, built every DataLoader and a
 * child logger whether it used them or not. The copy and the original share what either made.
 */
import type { EntityManager } from '@mikro-orm/postgresql';
import { createContext, type ContextDeps } from '../src/graphql/context';

/** Apollo Server 5's `cloneObject` (dist/cjs/ApolloServer.js), as it copies the context of every request. */
const cloneObject = <T extends object>(object: T): T => Object.assign(Object.create(Object.getPrototypeOf(object)), object);

function fakeDeps() {
  const made = { forks: 0, loaders: 0, loggers: 0 };
  const em = { fork: () => ({ forkNo: ++made.forks }) } as unknown as EntityManager;
  const deps = {
    em,
    services: { marker: 'services' },
    logger: { child: (bindings: object) => ({ loggerNo: ++made.loggers, bindings }) },
    createLoaders: (forked: unknown) => ({ loadersNo: ++made.loaders, em: forked }),
  } as unknown as ContextDeps;
  return { deps, made };
}

describe('request context', () => {
  it("Apollo's copy makes nothing; the first use makes each member once, shared by both", () => {
    const { deps, made } = fakeDeps();
    const principal = { userId: 'u1' } as never;
    const context = createContext(deps, 'req-1', principal, '10.0.0.1');
    const copy = cloneObject(context);
    expect(made).toEqual({ forks: 0, loaders: 0, loggers: 0 });
    expect(copy).toMatchObject({ requestId: 'req-1', principal, clientIp: '10.0.0.1', services: deps.services });

    const loaders = copy.loaders as unknown as { em: unknown };
    expect(made).toEqual({ forks: 1, loaders: 1, loggers: 0 });
    expect(loaders.em).toBe(copy.em);
    expect(context.em).toBe(copy.em);
    expect(context.loaders).toBe(copy.loaders);
    expect((context.logger as unknown as { bindings: object }).bindings).toEqual({ requestId: 'req-1', userId: 'u1' });
    expect(copy.logger).toBe(context.logger);
    expect(made).toEqual({ forks: 1, loaders: 1, loggers: 1 });
  });

  it('what the edge sets on the context after it is made is an own field, copied', () => {
    const { deps } = fakeDeps();
    const context = createContext(deps, 'req-2', null);
    context.publicEntryLimit = {};
    const copy = cloneObject(context);
    copy.publicEntryLimit!.expiresAt = 5;
    expect(context.publicEntryLimit.expiresAt).toBe(5);
    expect(copy.clientIp).toBe('unknown');
  });
});
