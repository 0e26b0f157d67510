/**
 * Metrics that cannot be blown up (issue 8, "What to build" 8): client-chosen
 * operation names are a bounded label (20,000 names were 20,000 series), and
 * `/metrics` can require a token.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sha256Hex } from '../src/graphql/plugins/persisted-documents';
import { OperationLabels } from '../src/observability/operation-labels';
import { createTestApp, type TestApp } from './helpers/test-app';

const METRICS_TOKEN = 'metrics-token-0123456789abcdef';
const TRUSTED = 'query TrustedSidebar { __typename }';

let t: TestApp;
beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'llmselect-metrics-'));
  const manifest = join(dir, 'persisted-documents.json');
  writeFileSync(manifest, JSON.stringify({ [sha256Hex(TRUSTED)]: TRUSTED }));
  t = await createTestApp({ env: { METRICS_TOKEN, METRICS_MAX_OPERATION_NAMES: '20', PERSISTED_DOCUMENTS_PATH: manifest } });
});
afterAll(() => t.close());

const scrape = async () => {
  const res = await fetch(`${t.url}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
  expect(res.status).toBe(200);
  return res.text();
};
const operationSeries = (text: string) => text.split('\n').filter((line) => line.startsWith('llmselect_graphql_operations_total{'));

it('keeps 1,000 distinct operation names to a bounded number of series', async () => {
  for (let i = 0; i < 1_000; i++) {
    const res = await t.gql(`query Probe${i} { __typename }`);
    expect(res.errors).toBeUndefined();
  }
  const series = operationSeries(await scrape());
  const operations = new Set(series.map((line) => /operation="([^"]*)"/.exec(line)![1]));
  // 20 learned names + other (+ anonymous / the manifest's names when used): never one per name.
  expect(operations.size).toBeLessThanOrEqual(20 + 3);
  expect(operations).toContain('other');
  expect(series.find((line) => line.includes('operation="other"'))).toMatch(/ 980$/);
});

it('always labels the operations of the trusted documents manifest by name', async () => {
  const res = await t.gql(TRUSTED);
  expect(res.errors).toBeUndefined();
  expect(operationSeries(await scrape()).some((line) => line.includes('operation="TrustedSidebar"'))).toBe(true);
});

it('protects /metrics with METRICS_TOKEN when it is set', async () => {
  const anonymous = await fetch(`${t.url}/metrics`);
  expect(anonymous.status).toBe(401);
  expect(anonymous.headers.get('www-authenticate')).toMatch(/^Bearer/);
  expect(await anonymous.text()).not.toContain('llmselect_');
  expect((await fetch(`${t.url}/metrics`, { headers: { authorization: 'Bearer wrong-token' } })).status).toBe(401);
  expect(await scrape()).toContain('llmselect_http_request_duration_seconds');
});

it('labels names as the table in operation-labels.ts says', () => {
  const labels = new OperationLabels(['Known'], 2);
  expect([labels.label('Known'), labels.label(null), labels.label('A'), labels.label('B'), labels.label('C'), labels.label('A')]).toEqual([
    'Known',
    'anonymous',
    'A',
    'B',
    'other',
    'A',
  ]);
  expect(OperationLabels.fromDocuments(['query One { a } mutation Two { b }', 'not graphql'], 0).label('Two')).toBe('Two');
});
