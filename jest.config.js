/** Tests run TypeScript through swc (fast, no type check: `tsc --noEmit` runs first in `npm test`). */
const swcConfig = JSON.parse(require('node:fs').readFileSync(`${__dirname}/.swcrc`, 'utf8'));

/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { ...swcConfig, swcrc: false }] },
  setupFiles: ['reflect-metadata'],
  globalSetup: '<rootDir>/test/helpers/global-setup.ts',
  globalTeardown: '<rootDir>/test/helpers/global-teardown.ts',
  testTimeout: 60_000,
  // Eight workers on this 2-core machine: the files spend most of their time waiting (PostgreSQL, child
  // processes, sockets, fake providers), so fewer workers left the cores idle (4: 161 s, 6: 151 s, 8: 139 s
  // for 76 files); no test depends on timing, so contention slows a run without failing it.
  maxWorkers: 8,
};
