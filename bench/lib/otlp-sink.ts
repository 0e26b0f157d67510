/**
 * A local OTLP/HTTP sink for `ours-miss-traced`: accepts every trace export
 * (reads the body, answers 200 `{}`) and counts them, so tracing on is
 * measured with its real cost in ours (spans made, batched, serialized and
 * posted) and none of a collector's.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface OtlpSink {
  /** What OTEL_EXPORTER_OTLP_ENDPOINT should say (traces are posted to `<url>/v1/traces`). */
  url: string;
  /** Exports received, and their bytes. */
  readonly exports: number;
  readonly bytes: number;
  close(): Promise<void>;
}

export async function startOtlpSink(): Promise<OtlpSink> {
  let exports = 0;
  let bytes = 0;
  const server: Server = createServer((req, res) => {
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => {
      if (req.url === '/v1/traces') exports++;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get exports() {
      return exports;
    },
    get bytes() {
      return bytes;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
