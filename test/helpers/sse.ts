/**
 * A minimal graphql-sse client ("distinct connections" mode): POST the
 * operation to /graphql/stream and read `next` / `complete` events.
 */
export interface SseSubscription<T> {
  /** Resolves with each `next` payload, in order; ends at `complete`. */
  events: AsyncGenerator<{ data?: T; errors?: Array<{ message: string; extensions?: Record<string, any> }> }>;
  /** Disconnects (like a closed browser tab). */
  close(): void;
  status: number;
  /** The response's headers. */
  headers: Headers;
  /** True once the server sent `complete` (a stream cut without it stays false). */
  readonly completed: boolean;
}

export async function subscribe<T = any>(
  baseUrl: string,
  query: string,
  variables: Record<string, unknown>,
  token?: string,
  /** Extra request headers (an `Origin`, say). */
  headers: Record<string, string> = {},
): Promise<SseSubscription<T>> {
  const controller = new AbortController();
  const response = await fetch(`${baseUrl}/graphql/stream`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      accept: 'text/event-stream',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...headers,
    },
    body: JSON.stringify({ query, variables }),
    signal: controller.signal,
  });
  let completed = false;
  async function* read() {
    if (!response.body) return;
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).trimStart())
            .join('\n');
          if (event === 'complete') {
            completed = true;
            return;
          }
          if (event === 'next' && data) yield JSON.parse(data);
        }
      }
    } catch (error) {
      if ((error as Error).name !== 'AbortError') throw error;
    }
  }
  return {
    events: read(),
    close: () => controller.abort(),
    status: response.status,
    headers: response.headers,
    get completed() {
      return completed;
    },
  };
}
