import { SignJWT } from 'jose';
import { createTestApp, type TestApp } from './helpers/test-app';

const REGISTER = `mutation($e: String!, $p: String!) { register(email: $e, password: $p) { token user { id email role } } }`;
const LOGIN = `mutation($e: String!, $p: String!) { login(email: $e, password: $p) { token user { id email } } }`;
const ME = `{ me { id email role } }`;

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ env: { ADMIN_EMAILS: 'Boss@Example.com' } });
});
afterAll(() => t.close());

describe('register and login', () => {
  it('registers, normalises the email, and the token authenticates `me`', async () => {
    const reg = await t.gql(REGISTER, { e: '  Alice@Example.COM ', p: 'long enough password' });
    expect(reg.errors).toBeUndefined();
    expect(reg.data.register.user).toMatchObject({ email: 'alice@example.com', role: 'USER' });
    const me = await t.gql(ME, {}, reg.data.register.token);
    expect(me.data.me).toEqual(reg.data.register.user);
  });

  it('rejects a second account whose email differs only by case', async () => {
    await t.gql(REGISTER, { e: 'dup@example.com', p: 'long enough password' });
    const again = await t.gql(REGISTER, { e: 'DUP@example.com', p: 'long enough password' });
    expect(again.errors?.[0]?.extensions?.code).toBe('BAD_USER_INPUT');
  });

  it('rejects weak passwords and malformed emails with BAD_USER_INPUT', async () => {
    const weak = await t.gql(REGISTER, { e: 'weak@example.com', p: 'short' });
    expect(weak.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'password' });
    const bad = await t.gql(REGISTER, { e: 'not-an-email', p: 'long enough password' });
    expect(bad.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'email' });
  });

  it('logs in with the right password, any email case', async () => {
    await t.gql(REGISTER, { e: 'bob@example.com', p: 'bobs password!' });
    const login = await t.gql(LOGIN, { e: 'BOB@example.com', p: 'bobs password!' });
    expect(login.data.login.user.email).toBe('bob@example.com');
  });

  it('answers the same UNAUTHENTICATED error for a wrong password and an unknown email', async () => {
    await t.gql(REGISTER, { e: 'carol@example.com', p: 'carols password' });
    const wrong = await t.gql(LOGIN, { e: 'carol@example.com', p: 'nope nope nope' });
    const unknown = await t.gql(LOGIN, { e: 'nobody@example.com', p: 'nope nope nope' });
    expect(wrong.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(unknown.errors?.[0]?.message).toBe(wrong.errors?.[0]?.message);
    expect(unknown.errors?.[0]?.extensions).toEqual(wrong.errors?.[0]?.extensions);
  });

  it('grants ADMIN to ADMIN_EMAILS (case-insensitive)', async () => {
    const reg = await t.gql(REGISTER, { e: 'boss@example.com', p: 'long enough password' });
    expect(reg.data.register.user.role).toBe('ADMIN');
  });

  it('never returns the password or its hash', async () => {
    const reg = await t.gql(REGISTER, { e: 'secret@example.com', p: 'hunter2hunter2' });
    expect(reg.raw).not.toContain('hunter2hunter2');
    expect(reg.raw).not.toContain('argon2');
    expect(t.logs.join('')).not.toContain('hunter2hunter2');
  });
});

describe('tokens', () => {
  const claims = async () => {
    const { userId } = await t.signUp('tok');
    return { sub: userId, role: 'USER', iss: 'llmselect' };
  };

  it('rejects requests without a token for everything but register/login', async () => {
    const res = await t.gql(ME);
    expect(res.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('rejects an unsigned (alg: none) token', async () => {
    const c = await claims();
    const encode = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const token = `${encode({ alg: 'none', typ: 'JWT' })}.${encode({ ...c, exp: Math.floor(Date.now() / 1000) + 60 })}.`;
    const res = await t.gql(ME, {}, token);
    expect(res.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
    expect(res.data?.me ?? null).toBeNull();
  });

  it('rejects a token signed with another secret', async () => {
    const c = await claims();
    const token = await new SignJWT({ role: c.role })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(c.sub)
      .setIssuer(c.iss)
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode('some-other-secret-some-other-secret!!'));
    const res = await t.gql(ME, {}, token);
    expect(res.errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('rejects an expired token and a token with another algorithm', async () => {
    const c = await claims();
    const secret = new TextEncoder().encode(t.app.config.jwtSecret);
    const expired = await new SignJWT({ role: c.role })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(c.sub)
      .setIssuer(c.iss)
      .setIssuedAt(1_000)
      .setExpirationTime(2_000)
      .sign(secret);
    expect((await t.gql(ME, {}, expired)).errors?.[0]).toMatchObject({ message: 'Token expired', extensions: { code: 'UNAUTHENTICATED' } });
    const hs512 = await new SignJWT({ role: c.role })
      .setProtectedHeader({ alg: 'HS512' })
      .setSubject(c.sub)
      .setIssuer(c.iss)
      .setExpirationTime('1h')
      .sign(secret);
    expect((await t.gql(ME, {}, hs512)).errors?.[0]?.extensions?.code).toBe('UNAUTHENTICATED');
  });

  it('takes the principal from the token claims without a user lookup', async () => {
    const { token } = await t.signUp('claims');
    const { count } = await t.countStatements(() => t.gql(`{ conversations(first: 1) { nodes { id } } }`, {}, token));
    // one page query + nothing for the principal (totalCount not asked)
    expect(count).toBe(1);
  });
});
