/**
 * A TCP proxy that breaks connections on command, put between the app and
 * PostgreSQL (or anything else) to test what a client sees when the network
 * or the server misbehaves. Real sockets, no mocks:
 *
 * - `cut({ refuseNew })`: destroys every open connection (the client sees
 *   "Connection terminated unexpectedly"); with `refuseNew`, connections made
 *   afterwards are closed as soon as they are accepted, until `heal()`.
 * - `stall()`: connections stay open but nothing is forwarded either way
 *   (a hung network or server), new ones included, until `heal()`.
 * - `slow(ms)`: every chunk waits `ms` before it is forwarded, in order.
 * - `cutWhenSent(pattern, { at })`: cuts the connection that carries the next
 *   client→server chunk matching `pattern` — `at: 'request'` drops that chunk
 *   (the server never sees the statement), `at: 'reply'` lets the request
 *   through and cuts when the server answers (the server executed and
 *   committed it, the client never learns). Resolves when the cut happened.
 *
 * Forwarding is byte-for-byte; PostgreSQL's wire protocol is plain text
 * without TLS on the loopback, so SQL text can be matched in the chunks.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

type Mode = 'pass' | 'refuse' | 'stall';

interface Pair {
  client: Socket;
  upstream: Socket;
  /** Chunks held while stalled, per direction. */
  heldUp: Buffer[];
  heldDown: Buffer[];
  /** Serialises delayed writes so `slow` keeps the byte order. */
  chainUp: Promise<void>;
  chainDown: Promise<void>;
  cutOnReply?: () => void;
}

interface Trigger {
  pattern: RegExp;
  at: 'request' | 'reply';
  fired: () => void;
}

export class FaultProxy {
  private mode: Mode = 'pass';
  private delayMs = 0;
  private readonly pairs = new Set<Pair>();
  private readonly triggers: Trigger[] = [];
  /** Connections accepted since start, for tests that want to see reconnects. */
  accepted = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    let proxy!: FaultProxy;
    const server = createServer((client) => proxy.accept(client));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    proxy = new FaultProxy(server, (server.address() as { port: number }).port, target);
    return proxy;
  }

  /** A proxy in front of the PostgreSQL of `url`, and `url` rewritten to go through it. */
  static async forUrl(url: string): Promise<{ proxy: FaultProxy; url: string }> {
    const parsed = new URL(url);
    const proxy = await FaultProxy.start({ host: parsed.hostname, port: Number(parsed.port || 5432) });
    parsed.hostname = '127.0.0.1';
    parsed.port = String(proxy.port);
    return { proxy, url: parsed.toString() };
  }

  get openConnections(): number {
    return this.pairs.size;
  }

  cut(options: { refuseNew?: boolean } = {}): void {
    if (options.refuseNew) this.mode = 'refuse';
    for (const pair of this.pairs) this.destroy(pair);
  }

  stall(): void {
    this.mode = 'stall';
  }

  slow(ms: number): void {
    this.delayMs = ms;
  }

  /** Back to forwarding everything at once; chunks held by `stall` are delivered. */
  heal(): void {
    this.mode = 'pass';
    this.delayMs = 0;
    for (const pair of this.pairs) {
      for (const chunk of pair.heldUp.splice(0)) this.forward(pair, 'up', chunk);
      for (const chunk of pair.heldDown.splice(0)) this.forward(pair, 'down', chunk);
    }
  }

  cutWhenSent(pattern: RegExp, options: { at: 'request' | 'reply' }): Promise<void> {
    return new Promise((fired) => this.triggers.push({ pattern, at: options.at, fired }));
  }

  async close(): Promise<void> {
    for (const pair of this.pairs) this.destroy(pair);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    this.accepted++;
    client.on('error', () => undefined);
    if (this.mode === 'refuse') {
      client.destroy();
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    upstream.on('error', () => undefined);
    const pair: Pair = { client, upstream, heldUp: [], heldDown: [], chainUp: Promise.resolve(), chainDown: Promise.resolve() };
    this.pairs.add(pair);
    client.on('data', (chunk: Buffer) => this.onChunk(pair, 'up', chunk));
    upstream.on('data', (chunk: Buffer) => this.onChunk(pair, 'down', chunk));
    const close = () => this.destroy(pair);
    client.on('close', close);
    upstream.on('close', close);
  }

  private onChunk(pair: Pair, direction: 'up' | 'down', chunk: Buffer): void {
    if (!this.pairs.has(pair)) return;
    if (direction === 'down' && pair.cutOnReply) {
      const fired = pair.cutOnReply;
      pair.cutOnReply = undefined;
      this.destroy(pair);
      fired();
      return;
    }
    if (direction === 'up') {
      const index = this.triggers.findIndex((t) => t.pattern.test(chunk.toString('latin1')));
      if (index >= 0) {
        const [trigger] = this.triggers.splice(index, 1);
        if (trigger!.at === 'request') {
          this.destroy(pair);
          trigger!.fired();
          return;
        }
        pair.cutOnReply = trigger!.fired;
      }
    }
    if (this.mode === 'stall') {
      (direction === 'up' ? pair.heldUp : pair.heldDown).push(chunk);
      return;
    }
    this.forward(pair, direction, chunk);
  }

  private forward(pair: Pair, direction: 'up' | 'down', chunk: Buffer): void {
    const to = direction === 'up' ? pair.upstream : pair.client;
    if (!this.delayMs) {
      to.write(chunk);
      return;
    }
    const delay = this.delayMs;
    const step = () =>
      new Promise<void>((resolve) => setTimeout(resolve, delay)).then(() => void (this.pairs.has(pair) && to.write(chunk)));
    if (direction === 'up') pair.chainUp = pair.chainUp.then(step);
    else pair.chainDown = pair.chainDown.then(step);
  }

  private destroy(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    pair.client.destroy();
    pair.upstream.destroy();
  }
}
